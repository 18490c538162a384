package proctest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// WaitOK polls GET url until it answers 200, for at most d. check, unless
// nil, runs before each try and ends the wait with its error: the server's
// process has gone, say.
func WaitOK(url string, d time.Duration, check func() error) error {
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(d)
	for {
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s not 200 within %s (last: %v)", url, d.Round(time.Millisecond), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
