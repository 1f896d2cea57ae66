package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/net/tsaddr"
)

// outsideInfo is where the servers outside the tailnet listen: an address only the harness's
// network namespace has (the lan topology puts it on the namespace's loopback), so a device
// reaches them only through the Go peer as its exit node.
type outsideInfo struct {
	IP          string `json:"ip"`
	TCPEchoPort int    `json:"tcpEchoPort"`
	HTTPPort    int    `json:"httpPort"`
}

// outsideBody is what GET / on the outside HTTP server answers.
const outsideBody = "hello from outside the tailnet\n"

// startOutside serves a TCP echo and HTTP on ip with the host's own network stack (not the
// tailnet's): what an exit node forwards to.
func startOutside(ip netip.Addr) *outsideInfo {
	serveTCPEcho(must(net.Listen("tcp", netip.AddrPortFrom(ip, tcpEchoPort).String())))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, outsideBody)
	})
	go http.Serve(must(net.Listen("tcp", netip.AddrPortFrom(ip, httpPort).String())), mux)
	return &outsideInfo{IP: ip.String(), TCPEchoPort: tcpEchoPort, HTTPPort: httpPort}
}

// exitRoutes are what `tailscale set --advertise-exit-node` advertises.
var exitRoutes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// exitForwarding is the Go peer's forwarding of exit traffic while it offers itself.
var exitForwarding struct {
	sync.Mutex
	stop func()
}

// offerExitNode makes the Go peer offer itself as an exit node, or stop. It advertises the
// default routes (its prefs: its packet filter then takes packets for outside addresses, and
// its netstack accepts their connections) and control approves them (testcontrol serves a
// node's routes only as set here), as an admin approving an exit node would. And it forwards
// those connections: tsnet hands a connection to a listener or a fallback handler only, and
// resets every other one (tsnet.go getTCPHandlerForFlow: "don't handle, don't forward to
// localhost"), where tailscaled's netstack would dial the destination itself. TCP only: tsnet
// has no fallback for UDP.
func offerExitNode(ctx context.Context, ctl *control, p *peer, on bool) error {
	var routes []netip.Prefix
	if on {
		routes = exitRoutes
	}
	exitForwarding.Lock()
	if exitForwarding.stop != nil {
		exitForwarding.stop()
		exitForwarding.stop = nil
	}
	if on {
		exitForwarding.stop = p.server.RegisterFallbackTCPHandler(forwardOutside)
	}
	exitForwarding.Unlock()
	lc, err := p.server.LocalClient()
	if err != nil {
		return err
	}
	prefs := &ipn.MaskedPrefs{Prefs: ipn.Prefs{AdvertiseRoutes: routes}, AdvertiseRoutesSet: true}
	if _, err := lc.EditPrefs(ctx, prefs); err != nil {
		return fmt.Errorf("advertising %v: %w", routes, err)
	}
	status, err := lc.StatusWithoutPeers(ctx)
	if err != nil {
		return err
	}
	ctl.server.SetSubnetRoutes(status.Self.PublicKey, routes)
	return nil
}

// forwardOutside takes a connection to an address outside the tailnet and joins it to one the
// host's own network stack dials there, as an exit node does.
func forwardOutside(src, dst netip.AddrPort) (func(net.Conn), bool) {
	if tsaddr.IsTailscaleIP(dst.Addr()) {
		return nil, false
	}
	return func(conn net.Conn) {
		defer conn.Close()
		out, err := net.DialTimeout("tcp", dst.String(), 10*time.Second)
		if err != nil {
			return
		}
		defer out.Close()
		go func() {
			io.Copy(out, conn)
			out.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(conn, out)
	}, true
}
