package proctest

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"
)

// SyncBuffer is a bytes.Buffer that may be written and read concurrently,
// and that keeps each complete line with the time it arrived: some programs
// (HAProxy's state changes) write lines that carry no time of their own.
// Its zero value is empty and ready to use.
type SyncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	lines   []Line
}

// Line is one line of output, without its newline, stamped when it arrived.
type Line struct {
	At   time.Time
	Text string
}

// Write appends b to the buffer; it never fails.
func (s *SyncBuffer) Write(b []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.lines = append(s.lines, Line{At: now, Text: string(s.partial[:i])})
		s.partial = s.partial[i+1:]
	}
	return s.buf.Write(b)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Lines returns the complete lines so far.
func (s *SyncBuffer) Lines() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// Tail is the last n lines written so far, for failure logs.
func (s *SyncBuffer) Tail(n int) string { return Tail(s.String(), n) }

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
