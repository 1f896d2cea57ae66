package main

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"

	"tailscale.com/tailcfg"
)

// logouts learns of logouts (a registration whose key expiry is in the past) from testcontrol's
// verbose log, its only report of each registration request. testcontrol treats a logout like
// any registration; real control servers expire the node key and delete an ephemeral node.
// Those log lines hold auth keys, so they never reach the harness's own log.
type logouts struct {
	out  io.Writer
	mu   sync.Mutex
	keys map[string]bool
}

const registrationLogPrefix = "Got tailcfg.RegisterRequest: "

func (l *logouts) Write(p []byte) (int, error) {
	at := bytes.Index(p, []byte(registrationLogPrefix))
	if at < 0 {
		return l.out.Write(p)
	}
	var req tailcfg.RegisterRequest
	if json.Unmarshal(p[at+len(registrationLogPrefix):], &req) == nil && !req.Expiry.IsZero() && req.Expiry.Before(time.Now()) {
		l.mu.Lock()
		l.keys[req.NodeKey.String()] = true
		l.mu.Unlock()
	}
	return len(p), nil
}

// loggedOut reports whether the node with this key (nodekey:<hex>) has logged out.
func (l *logouts) loggedOut(nodeKey string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[nodeKey]
}
