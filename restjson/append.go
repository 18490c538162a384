package restjson

import (
	"time"
	"unicode/utf8"

	"github.com/acme/usersd/users"
)

// AppendUser appends u's JSON and a newline to b: what encoding/json
// writes for FromUser(users.ToProto(u)), byte for byte, without the
// message, the reflection or the time strings in between. GetUser's REST
// answer is the hot path; make bench compares it with a bare handler.
func AppendUser(b []byte, u users.User) []byte {
	var id [36]byte
	hexUUID(id[:], u.ID)
	b = append(b, `{"id":"`...)
	b = append(b, id[:]...)
	b = append(b, `","email":`...)
	b = appendString(b, u.Email)
	b = append(b, `,"full_name":`...)
	b = appendString(b, u.FullName)
	b = append(b, `,"created_at":"`...)
	b = u.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updated_at":"`...)
	b = u.UpdatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","etag":`...)
	b = appendString(b, users.ETag(u))
	return append(b, "}\n"...)
}

func hexUUID(dst []byte, u [16]byte) {
	const digits = "0123456789abcdef"
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = digits[c>>4], digits[c&0xf]
		j += 2
	}
}

// appendString appends s as a JSON string the way encoding/json does:
// quotes, backslashes and control characters escaped, <, > and & as
// \u003c, \u003e and \u0026, U+2028 and U+2029 escaped, invalid UTF-8 as
// U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
