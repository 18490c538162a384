package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// h1pool is a minimal HTTP/1.1 client over a bounded set of keep-alive
// connections: one request at a time per connection, like wrk. It costs a
// fraction of net/http's client, which matters when client and server share
// two cores.
type h1pool struct {
	addr, host string
	extra      string // header lines sent with every request ("K: V\r\n"...)
	size       int
	free       chan *h1conn
	slots      chan struct{}
}

type h1conn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	body []byte
}

func newH1Pool(base string, size int, headers http.Header) (*h1pool, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("bad -url %q: want http://host:port", base)
	}
	var extra strings.Builder
	for k, vs := range headers {
		for _, v := range vs {
			extra.WriteString(k + ": " + v + "\r\n")
		}
	}
	return &h1pool{addr: u.Host, host: u.Host, extra: extra.String(), size: size, free: make(chan *h1conn, size), slots: make(chan struct{}, size)}, nil
}

func (p *h1pool) get(ctx context.Context) (*h1conn, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	select {
	case c := <-p.free:
		return c, nil
	case p.slots <- struct{}{}: // room for another connection
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return &h1conn{c: nc, r: bufio.NewReaderSize(nc, 16<<10), w: bufio.NewWriterSize(nc, 4<<10)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *h1pool) put(c *h1conn, ok bool) {
	if ok {
		p.free <- c
		return
	}
	c.c.Close()
	<-p.slots
}

// do sends one request and reads the whole response; it returns the status
// and the body, which stays valid until the connection is used again (the
// callback runs before that).
func (p *h1pool) do(ctx context.Context, method, path, ctype string, body []byte, check func(status int, body []byte) error) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	} else {
		_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	status, keep, err := c.roundTrip(p.host, p.extra, method, path, ctype, body)
	if err != nil {
		p.put(c, false)
		return err
	}
	err = check(status, c.body)
	p.put(c, keep)
	return err
}

func (c *h1conn) roundTrip(host, extra, method, path, ctype string, body []byte) (status int, keep bool, err error) {
	w := c.w
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	w.WriteString(extra)
	if body != nil {
		w.WriteString("Content-Type: ")
		w.WriteString(ctype)
		w.WriteString("\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, false, err
	}

	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep := -1, false, true
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			keep = !bytes.EqualFold(v, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		for {
			sz, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			sz = bytes.TrimRight(sz, "\r\n")
			if i := bytes.IndexByte(sz, ';'); i >= 0 {
				sz = sz[:i]
			}
			n, err := strconv.ParseInt(string(sz), 16, 32)
			if err != nil {
				return 0, false, fmt.Errorf("bad chunk size %q", sz)
			}
			if n == 0 {
				for { // trailers
					t, err := c.r.ReadSlice('\n')
					if err != nil {
						return 0, false, err
					}
					if len(bytes.TrimRight(t, "\r\n")) == 0 {
						break
					}
				}
				break
			}
			if err := c.readN(int(n) + 2); err != nil {
				return 0, false, err
			}
			c.body = c.body[:len(c.body)-2]
		}
	case length >= 0:
		if err := c.readN(length); err != nil {
			return 0, false, err
		}
	default:
		return 0, false, errors.New("response without length")
	}
	return status, keep, nil
}

func (c *h1conn) readN(n int) error {
	start := len(c.body)
	if cap(c.body)-start < n {
		nb := make([]byte, start, start+n+512)
		copy(nb, c.body)
		c.body = nb
	}
	c.body = c.body[:start+n]
	_, err := ioReadFull(c.r, c.body[start:])
	return err
}
