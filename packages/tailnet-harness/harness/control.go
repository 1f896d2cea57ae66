package main

import (
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

type control struct {
	url      string // plain http, for the Go nodes
	tlsURL   string // https, for our devices
	server   *testcontrol.Server
	serving  *restartable
	counts   *mapRequestCounts
	sessions *sessions
	logouts  *logouts
	mu       sync.Mutex // guards server.RequireAuth writes
}

// sessions tracks each node's streaming map polls: a node whose polls have all ended has
// disconnected from control. testcontrol never removes ephemeral nodes, so this is how tests
// see that a device left.
type sessions struct {
	mu     sync.Mutex
	active map[string]int
	seen   map[string]bool
}

func (s *sessions) start(node string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active[node]++
	s.seen[node] = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.active[node]--
	}
}

// disconnected reports whether the node has polled and has no poll open now.
func (s *sessions) disconnected(node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[node] && s.active[node] == 0
}

// mapRequestCounts counts map requests per node, streaming and not, so tests can see whether
// a client keeps sending "lite" endpoint updates (the feedback loop described in docs/).
type mapRequestCounts struct {
	mu        sync.Mutex
	streaming map[string]int
	lite      map[string]int
}

func (c *mapRequestCounts) add(req *tailcfg.MapRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	node := req.NodeKey.ShortString()
	if req.Stream {
		c.streaming[node]++
	} else {
		c.lite[node]++
	}
}

func (c *mapRequestCounts) snapshot() map[string]map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]int{"streaming": {}, "lite": {}}
	for k, v := range c.streaming {
		out["streaming"][k] = v
	}
	for k, v := range c.lite {
		out["lite"][k] = v
	}
	return out
}

// startControl serves testcontrol on plain http (for the Go nodes) and on https with cert (for
// our devices, which verify it).
func startControl(listenIP netip.Addr, dm *tailcfg.DERPMap, requiredKey string, throttle time.Duration, cert tls.Certificate, logf logger.Logf) *control {
	counts := &mapRequestCounts{streaming: map[string]int{}, lite: map[string]int{}}
	polls := &sessions{active: map[string]int{}, seen: map[string]bool{}}
	hold := throttleLiteUpdates(throttle)
	seen := &logouts{out: log.Writer(), keys: map[string]bool{}}
	log.SetOutput(seen)
	ctl := &testcontrol.Server{
		DERPMap:          dm,
		ExplicitBaseURL:  "", // set below, once the plain listener has its port
		MagicDNSDomain:   magicDNS,
		AllOnline:        true,
		AllNodesSameUser: true,
		RequireAuthKey:   requiredKey,
		// Non-nil: a node gets the tags its registration asks for (Hostinfo.RequestTags).
		TagOwners: map[string][]string{},
		Logf:      logf,
		// Logs each registration request, which is how logouts are seen (logouts.go).
		Verbose: true,
		HoldMapRequest: func(req *tailcfg.MapRequest) func() {
			counts.add(req)
			if req.Stream {
				return polls.start(req.NodeKey.String())
			}
			return hold(req)
		},
	}
	anyPort := netip.AddrPortFrom(listenIP, 0).String()
	serving := &restartable{handler: ctl, endpoints: []endpoint{{addr: anyPort}, {addr: anyPort, tls: serverTLS(cert)}}}
	if err := serving.serve(); err != nil {
		panic(err)
	}
	ctl.ExplicitBaseURL = "http://" + serving.endpoints[0].addr
	return &control{
		url: ctl.ExplicitBaseURL, tlsURL: "https://" + serving.endpoints[1].addr,
		server: ctl, serving: serving, counts: counts, sessions: polls, logouts: seen,
	}
}

// restartable serves control on fixed addresses (plain http for the Go nodes, https for our
// devices) and can drop everything at once, as when a control server is killed and started
// again: the listeners and every open connection (the Noise sessions are hijacked, so
// http.Server.Close alone would leave them open) close, and a later start listens on the same
// addresses with the same state.
type restartable struct {
	handler   http.Handler
	endpoints []endpoint
	mu        sync.Mutex
	lns       []net.Listener
	conns     map[net.Conn]struct{}
}

type endpoint struct {
	addr string
	tls  *tls.Config // nil: plain http
}

// serve listens on every endpoint (port 0 picks one, kept for later starts).
func (r *restartable) serve() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = map[net.Conn]struct{}{}
	for i, ep := range r.endpoints {
		ln, err := net.Listen("tcp", ep.addr)
		if err != nil {
			for _, open := range r.lns {
				open.Close()
			}
			r.lns, r.conns = nil, nil
			return err
		}
		r.endpoints[i].addr = ln.Addr().String()
		r.lns = append(r.lns, ln)
		var served net.Listener = trackedListener{ln, r}
		if ep.tls != nil {
			served = tls.NewListener(served, ep.tls)
		}
		go http.Serve(served, r.handler)
	}
	return nil
}

// stop closes the listeners and every connection; false when already stopped.
func (r *restartable) stop() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lns == nil {
		return false
	}
	for _, ln := range r.lns {
		ln.Close()
	}
	for c := range r.conns {
		c.Close()
	}
	r.lns, r.conns = nil, nil
	return true
}

// start listens on the same addresses again; false when already serving.
func (r *restartable) start() (bool, error) {
	r.mu.Lock()
	serving := r.lns != nil
	r.mu.Unlock()
	if serving {
		return false, nil
	}
	if err := r.serve(); err != nil {
		return false, err
	}
	return true, nil
}

func (r *restartable) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *restartable) forget(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

type trackedListener struct {
	net.Listener
	owner *restartable
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.owner.track(c) {
		c.Close()
		return nil, net.ErrClosed
	}
	return &trackedConn{Conn: c, owner: l.owner}, nil
}

type trackedConn struct {
	net.Conn
	owner *restartable
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.owner.forget(c.Conn) })
	return c.Conn.Close()
}

// throttleLiteUpdates holds a node's non-streaming map requests once it has sent a burst of
// them: after liteBurst at once, one per interval. testcontrol answers each such update with a
// full netmap including the DERP map, and tailscale-rs 0.5.0 re-measures DERP latency on each
// of those and reports the new figures in another update: about 19 updates a second, forever.
// The burst lets every node's first updates (its endpoints and DERP home, which peers need
// before they can route to it) through at once; a short interval keeps the hold, which stalls
// the Rust node's control actor, well under a TCP retransmission timeout.
func throttleLiteUpdates(every time.Duration) func(*tailcfg.MapRequest) func() {
	var mu sync.Mutex
	next := map[key.NodePublic]time.Time{} // when the node's next update is due at the steady rate
	return func(req *tailcfg.MapRequest) func() {
		if req.Stream || every <= 0 {
			return nil
		}
		mu.Lock()
		now := time.Now()
		due := next[req.NodeKey]
		if due.Before(now) {
			due = now
		}
		next[req.NodeKey] = due.Add(every)
		mu.Unlock()
		time.Sleep(due.Add(-(liteBurst - 1) * every).Sub(now))
		return nil
	}
}

const liteBurst = 8

// setInteractiveLogin makes new registrations wait for a login URL to be completed.
// tailscale-rs 0.5.0 only reports a login URL when control also says the machine is not
// authorized (ts_control register.rs), so this turns on RequireMachineAuth as well.
func (c *control) setInteractiveLogin(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.server.RequireAuth = on
	c.server.RequireMachineAuth = on
}

// completeLogin approves the login URL; the follow-up registration then succeeds because
// interactive mode is switched off again.
func (c *control) completeLogin(url string) bool {
	c.setInteractiveLogin(false)
	return c.server.CompleteAuth(url)
}
