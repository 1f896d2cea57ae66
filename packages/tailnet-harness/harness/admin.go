package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/util/clientmetric"
)

// The admin API is for tests only and lives on its own port: testcontrol panics the whole
// process on paths it does not know, so nothing but Tailscale clients talks to the control port.
func startAdmin(listenIP netip.Addr, ctl *control, relay *derpserver.Server, p *peer, authKey, workDir string) string {
	mux := http.NewServeMux()
	// The relay's counters, as cmd/derper serves them, and the packets it dropped by reason and
	// kind (full per-client queues: "queue_head"), a process-wide expvar of derpserver.
	mux.HandleFunc("GET /derp-stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		dropped := map[string]json.RawMessage{}
		if v, ok := expvar.Get("derp_packets_dropped").(interface{ Do(func(expvar.KeyValue)) }); ok {
			v.Do(func(kv expvar.KeyValue) { dropped[kv.Key] = json.RawMessage(kv.Value.String()) })
		}
		// The Go nodes' own relay sends (magicsock queues 32 writes per DERP connection and drops
		// the rest), process-wide client metrics of both Go nodes here.
		clientSends := map[string]int64{}
		for _, m := range clientmetric.Metrics() {
			if strings.HasPrefix(m.Name(), "magicsock_send_derp") || strings.HasPrefix(m.Name(), "magicsock_recv_derp") {
				clientSends[m.Name()] = m.Value()
			}
		}
		fmt.Fprintf(w, `{"server":%s,"dropped":%s,"goNodes":%s}`,
			relay.ExpVar(false).String(), must(json.Marshal(dropped)), must(json.Marshal(clientSends)))
	})
	mux.HandleFunc("GET /bench-go", serveGoBench(&goBench{dir: filepath.Join(workDir, "go-bench")}, ctl.url, authKey, p))
	peerRoutes(mux, p, func(context.Context) (func(key.NodePublic) []string, error) {
		return func(k key.NodePublic) []string { return endpointsOf(ctl.server.Node(k)) }, nil
	})
	mux.HandleFunc("POST /require-auth", func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.FormValue("on"))
		if err != nil {
			http.Error(w, "on must be true or false", http.StatusBadRequest)
			return
		}
		ctl.setInteractiveLogin(on)
		writeJSON(w, map[string]bool{"requireAuth": on})
	})
	mux.HandleFunc("POST /complete-auth", func(w http.ResponseWriter, r *http.Request) {
		if !ctl.completeLogin(r.FormValue("url")) {
			http.Error(w, "unknown auth URL", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]bool{"completed": true})
	})
	// Blocks until the node with ?nodekey= (nodekey:<hex>) has no streaming map poll open.
	mux.HandleFunc("GET /wait-disconnected", func(w http.ResponseWriter, r *http.Request) {
		waitForNode(w, r, "disconnected", ctl.sessions.disconnected)
	})
	// Control going away and coming back on the same address with the same state: stop drops
	// the listener and every connection, start listens again, restart does both with ?downMs=
	// (default 300) in between.
	mux.HandleFunc("POST /control-stop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]bool{"stopped": ctl.serving.stop()})
	})
	mux.HandleFunc("POST /control-start", func(w http.ResponseWriter, r *http.Request) {
		started, err := ctl.serving.start()
		if err != nil {
			http.Error(w, "listen: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]bool{"started": started})
	})
	mux.HandleFunc("POST /control-restart", func(w http.ResponseWriter, r *http.Request) {
		down, err := strconv.Atoi(r.FormValue("downMs"))
		if err != nil || down < 0 {
			down = 300
		}
		ctl.serving.stop()
		time.Sleep(time.Duration(down) * time.Millisecond)
		if _, err := ctl.serving.start(); err != nil {
			http.Error(w, "listen: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]int{"downMs": down})
	})
	// Blocks until the node with ?nodekey= (nodekey:<hex>) has logged out (logouts.go).
	mux.HandleFunc("GET /wait-logged-out", func(w http.ResponseWriter, r *http.Request) {
		waitForNode(w, r, "loggedOut", ctl.logouts.loggedOut)
	})
	// The policy's app capabilities (a grant from every node to every node with an "app" part):
	// the body is a tailcfg.PeerCapMap, e.g. {"example.com/cap/x": [{"k": "v"}]}; {} or null
	// takes them away.
	mux.HandleFunc("POST /app-caps", func(w http.ResponseWriter, r *http.Request) {
		var caps tailcfg.PeerCapMap
		if err := json.NewDecoder(r.Body).Decode(&caps); err != nil {
			http.Error(w, "the body must be a capability map: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctl.server.SetGlobalAppCaps(caps)
		writeJSON(w, map[string]int{"appCaps": len(caps)})
	})
	// The node capabilities of the node with ?nodekey= (nodekey:<hex>), as it and its peers see
	// them: the body is a tailcfg.NodeCapMap.
	mux.HandleFunc("POST /node-caps", func(w http.ResponseWriter, r *http.Request) {
		var nodeKey key.NodePublic
		if err := nodeKey.UnmarshalText([]byte(r.URL.Query().Get("nodekey"))); err != nil {
			http.Error(w, "nodekey: "+err.Error(), http.StatusBadRequest)
			return
		}
		var caps tailcfg.NodeCapMap
		if err := json.NewDecoder(r.Body).Decode(&caps); err != nil {
			http.Error(w, "the body must be a capability map: "+err.Error(), http.StatusBadRequest)
			return
		}
		if ctl.server.Node(nodeKey) == nil {
			http.Error(w, "no node has that key", http.StatusNotFound)
			return
		}
		ctl.server.SetNodeCapMap(nodeKey, caps)
		writeJSON(w, map[string]int{"nodeCaps": len(caps)})
	})
	// ?on=true: the Go peer offers itself as an exit node (advertised and approved default
	// routes); ?on=false: it stops.
	mux.HandleFunc("POST /exit-node", func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.FormValue("on"))
		if err != nil {
			http.Error(w, "on must be true or false", http.StatusBadRequest)
			return
		}
		if err := offerExitNode(r.Context(), ctl, p, on); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, map[string]bool{"exitNode": on})
	})
	mux.HandleFunc("GET /map-requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, ctl.counts.snapshot())
	})
	ln := must(net.Listen("tcp", netip.AddrPortFrom(listenIP, 0).String()))
	go http.Serve(ln, mux)
	return "http://" + ln.Addr().String()
}

// startPeerAdmin serves the endpoints that concern the peer alone (-peer-only: no control here)
// on the unix socket at path, where the test process reaches it whatever network namespace each
// runs in. Endpoints come from the peer's network map.
func startPeerAdmin(path string, p *peer) string {
	mux := http.NewServeMux()
	peerRoutes(mux, p, func(ctx context.Context) (func(key.NodePublic) []string, error) {
		return netmapEndpoints(ctx, p)
	})
	ln := must(net.Listen("unix", path))
	go http.Serve(ln, mux)
	return "unix:" + path
}

// endpointSource gives, for each node key, the endpoints the node advertised.
type endpointSource func(ctx context.Context) (func(key.NodePublic) []string, error)

// peerRoutes are the admin endpoints that act as, or ask, the Go peer p.
func peerRoutes(mux *http.ServeMux, p *peer, endpoints endpointSource) {
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		peers, err := peerList(r.Context(), endpoints, p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, peers)
	})
	mux.HandleFunc("GET /wait-peer", func(w http.ResponseWriter, r *http.Request) {
		waitForPeer(w, r, endpoints, p, true)
	})
	mux.HandleFunc("GET /wait-peer-gone", func(w http.ResponseWriter, r *http.Request) {
		waitForPeer(w, r, endpoints, p, false)
	})
	mux.HandleFunc("POST /dial-tcp", func(w http.ResponseWriter, r *http.Request) {
		dialAndEcho(w, r, p, false)
	})
	mux.HandleFunc("POST /dial-tcp-hash", func(w http.ResponseWriter, r *http.Request) {
		dialAndEcho(w, r, p, true)
	})
	mux.HandleFunc("GET /send-tcp", func(w http.ResponseWriter, r *http.Request) {
		sendPattern(w, r, p)
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		pingFromPeer(w, r, p)
	})
	mux.HandleFunc("GET /fetch", func(w http.ResponseWriter, r *http.Request) {
		fetch(w, r, p)
	})
}

func endpointsOf(node *tailcfg.Node) []string {
	endpoints := []string{}
	if node != nil {
		for _, endpoint := range node.Endpoints {
			endpoints = append(endpoints, endpoint.String())
		}
	}
	return endpoints
}

// netmapEndpoints reads the endpoints of every node in p's current network map.
func netmapEndpoints(ctx context.Context, p *peer) (func(key.NodePublic) []string, error) {
	lc, err := p.server.LocalClient()
	if err != nil {
		return nil, err
	}
	watcher, err := lc.WatchIPNBus(ctx, ipn.NotifyInitialNetMap)
	if err != nil {
		return nil, err
	}
	defer watcher.Close()
	n, err := watcher.Next()
	if err != nil {
		return nil, err
	}
	byKey := map[key.NodePublic][]string{}
	if n.NetMap != nil {
		for _, node := range n.NetMap.Peers {
			byKey[node.Key()] = endpointsOf(node.AsStruct())
		}
	}
	return func(k key.NodePublic) []string { return append([]string{}, byKey[k]...) }, nil
}

// peerView is a node as the Go peer sees it, with the path the Go peer sends to it on: CurAddr
// is the UDP endpoint of a direct path it trusts, empty while it sends through DERP (Relay).
// Endpoints are the node's as control has them, or (-peer-only) as the Go peer's network map does.
type peerView struct {
	Hostname  string   `json:"hostname"`
	IPv4      string   `json:"ipv4"`
	IPv6      string   `json:"ipv6"`
	Online    bool     `json:"online"`
	Endpoints []string `json:"endpoints"`
	CurAddr   string   `json:"curAddr"`
	Relay     string   `json:"relay"`
	RxBytes   int64    `json:"rxBytes"`
	TxBytes   int64    `json:"txBytes"`
}

func peerList(ctx context.Context, endpoints endpointSource, p *peer) ([]peerView, error) {
	lc, err := p.server.LocalClient()
	if err != nil {
		return nil, err
	}
	st, err := lc.Status(ctx)
	if err != nil {
		return nil, err
	}
	advertised, err := endpoints(ctx)
	if err != nil {
		return nil, err
	}
	peers := []peerView{}
	for _, ps := range st.Peer {
		peers = append(peers, view(ps, advertised(ps.PublicKey)))
	}
	return peers, nil
}

func view(ps *ipnstate.PeerStatus, endpoints []string) peerView {
	v := peerView{
		Hostname: ps.HostName, Online: ps.Online, Endpoints: endpoints, CurAddr: ps.CurAddr,
		Relay: ps.Relay, RxBytes: ps.RxBytes, TxBytes: ps.TxBytes,
	}
	for _, ip := range ps.TailscaleIPs {
		if ip.Is4() {
			v.IPv4 = ip.String()
		} else {
			v.IPv6 = ip.String()
		}
	}
	return v
}

// timeoutContext bounds every wait by ?timeout= milliseconds (default 15000).
func timeoutContext(r *http.Request) (context.Context, context.CancelFunc) {
	ms, err := strconv.Atoi(r.FormValue("timeout"))
	if err != nil || ms <= 0 {
		ms = 15000
	}
	return context.WithTimeout(r.Context(), time.Duration(ms)*time.Millisecond)
}

// waitForPeer blocks until the Go peer sees (present) or no longer sees (!present) ?ip=.
func waitForPeer(w http.ResponseWriter, r *http.Request, endpoints endpointSource, p *peer, present bool) {
	want, err := netip.ParseAddr(r.FormValue("ip"))
	if err != nil {
		http.Error(w, "ip must be an IP address", http.StatusBadRequest)
		return
	}
	ctx, cancel := timeoutContext(r)
	defer cancel()
	for {
		peers, err := peerList(ctx, endpoints, p)
		if err == nil {
			var found *peerView
			for i := range peers {
				if peers[i].IPv4 == want.String() || peers[i].IPv6 == want.String() {
					found = &peers[i]
				}
			}
			if present && found != nil {
				writeJSON(w, found)
				return
			}
			if !present && found == nil {
				writeJSON(w, map[string]bool{"gone": true})
				return
			}
		}
		select {
		case <-ctx.Done():
			http.Error(w, fmt.Sprintf("timed out waiting for %s (present=%v)", want, present), http.StatusGatewayTimeout)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dialAndEcho has the Go peer dial ?addr= over the tailnet, send the request body, then read
// ?expect= bytes (default: as many as it sent) or until EOF, and answer what it read (or its
// length and SHA-256 when hashOnly).
func dialAndEcho(w http.ResponseWriter, r *http.Request, p *peer, hashOnly bool) {
	ctx, cancel := timeoutContext(r)
	defer cancel()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	expect := len(body)
	if e := r.FormValue("expect"); e != "" {
		if expect, err = strconv.Atoi(e); err != nil || expect < 0 {
			http.Error(w, "expect must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	conn, ok := dialFromPeer(ctx, w, p, r.FormValue("addr"))
	if !ok {
		return
	}
	defer conn.Close()
	writeErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(body)
		writeErr <- err
	}()
	hash := sha256.New()
	var got []byte
	sink := io.Writer(hash)
	if !hashOnly {
		sink = io.MultiWriter(hash, writerFunc(func(b []byte) (int, error) { got = append(got, b...); return len(b), nil }))
	}
	n, readErr := io.Copy(sink, io.LimitReader(conn, int64(expect)))
	if err := <-writeErr; err != nil {
		http.Error(w, "write: "+err.Error(), http.StatusBadGateway)
		return
	}
	if readErr != nil {
		http.Error(w, fmt.Sprintf("read after %d bytes: %v", n, readErr), http.StatusBadGateway)
		return
	}
	if hashOnly {
		writeJSON(w, map[string]any{"bytes": n, "sha256": hex.EncodeToString(hash.Sum(nil))})
		return
	}
	w.Write(got)
}

// sendPattern has the Go peer dial ?addr=, write ?n= bytes of the pattern, and close.
func sendPattern(w http.ResponseWriter, r *http.Request, p *peer) {
	ctx, cancel := timeoutContext(r)
	defer cancel()
	n, err := strconv.Atoi(r.FormValue("n"))
	if err != nil || n < 0 {
		http.Error(w, "n must be a non-negative integer", http.StatusBadRequest)
		return
	}
	conn, ok := dialFromPeer(ctx, w, p, r.FormValue("addr"))
	if !ok {
		return
	}
	defer conn.Close()
	hash := sha256.New()
	buffered := bufio.NewWriterSize(io.MultiWriter(conn, hash), 64<<10)
	if err := writePattern(buffered, n); err == nil {
		err = buffered.Flush()
	}
	if err != nil {
		http.Error(w, "write: "+err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, map[string]any{"bytes": n, "sha256": hex.EncodeToString(hash.Sum(nil))})
}

// dialFromPeer has the Go peer dial addr over the tailnet, bounded by ctx's deadline; on
// failure it answers the request with the error and returns false.
func dialFromPeer(ctx context.Context, w http.ResponseWriter, p *peer, addr string) (net.Conn, bool) {
	conn, err := p.server.Dial(ctx, "tcp", addr)
	if err != nil {
		http.Error(w, "dial: "+err.Error(), http.StatusBadGateway)
		return nil, false
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	return conn, true
}

// fetch has the Go peer GET ?url= over the tailnet.
func fetch(w http.ResponseWriter, r *http.Request, p *peer) {
	ctx, cancel := timeoutContext(r)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.FormValue("url"), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res, err := p.server.HTTPClient().Do(req)
	if err != nil {
		http.Error(w, "fetch: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		http.Error(w, "fetch body: "+err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, map[string]any{"status": res.StatusCode, "body": string(body)})
}

// pingFromPeer has the Go peer disco-ping the node at ?ip= as `tailscale ping` does, and
// reports Go's result: the latency and the endpoint or DERP region the pong came by, or why not.
func pingFromPeer(w http.ResponseWriter, r *http.Request, p *peer) {
	ctx, cancel := timeoutContext(r)
	defer cancel()
	ip, err := netip.ParseAddr(r.FormValue("ip"))
	if err != nil {
		http.Error(w, "ip: "+err.Error(), http.StatusBadRequest)
		return
	}
	lc, err := p.server.LocalClient()
	if err != nil {
		http.Error(w, "local client: "+err.Error(), http.StatusInternalServerError)
		return
	}
	result, err := lc.Ping(ctx, ip, tailcfg.PingDisco)
	if err != nil {
		http.Error(w, "ping: "+err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, result)
}

// writePattern writes n bytes where byte i is i mod 251 (a prime, so the pattern never lines
// up with buffer sizes and a dropped or repeated chunk changes the hash).
func writePattern(w io.Writer, n int) error {
	chunk := make([]byte, 32<<10)
	for written := 0; written < n; {
		size := min(len(chunk), n-written)
		for i := range size {
			chunk[i] = byte((written + i) % 251)
		}
		if _, err := w.Write(chunk[:size]); err != nil {
			return err
		}
		written += size
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// waitForNode answers once done(?nodekey=) holds, as {"<what>": true}, or 504 at ?timeout= (ms).
func waitForNode(w http.ResponseWriter, r *http.Request, what string, done func(nodeKey string) bool) {
	ctx, cancel := timeoutContext(r)
	defer cancel()
	node := r.FormValue("nodekey")
	for !done(node) {
		select {
		case <-ctx.Done():
			http.Error(w, "timed out waiting for "+node+": "+what, http.StatusGatewayTimeout)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	writeJSON(w, map[string]bool{what: true})
}
