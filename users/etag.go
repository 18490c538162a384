package users

import (
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ETag is u's etag, as the API shows it.
func ETag(u User) string { return etagOf(u.ID, u.Version) }

// An etag names one version of one user: the version in base 36 and a
// check of the id and version, so an etag read from one user never matches
// another user at the same version. Clients treat it as opaque.
func etagOf(id uuid.UUID, version int64) string {
	return strconv.FormatInt(version, 36) + "-" + etagCheck(id, version)
}

func etagCheck(id uuid.UUID, version int64) string {
	h := fnv.New64a()
	_, _ = h.Write(id[:])
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(version))
	_, _ = h.Write(v[:])
	return strconv.FormatUint(h.Sum64()&0xffffffff, 36)
}

// versionOf reads the version from an etag of user id: 0 for no etag (any
// version will do), -1 for one that is not an etag of this user (no
// version matches it).
func versionOf(id uuid.UUID, etag string) int64 {
	if etag == "" {
		return 0
	}
	v, check, ok := strings.Cut(etag, "-")
	version, err := strconv.ParseInt(v, 36, 64)
	if !ok || err != nil || version < 1 || check != etagCheck(id, version) {
		return -1
	}
	return version
}
