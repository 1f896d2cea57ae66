package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// startDERP serves DERP over TLS with cert (from the run's CA, which our devices trust with
// caFile); the Go nodes skip verification because the DERP map marks the node InsecureForTests.
// The handler also answers the /derp/latency-check probe tailscale-rs uses to pick its home
// region.
func startDERP(cert tls.Certificate, logf logger.Logf) int {
	server := derpserver.New(key.NewNode(), logf)
	ln := must(net.Listen("tcp", "127.0.0.1:0"))
	srv := httptest.NewUnstartedServer(derpserver.Handler(server))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = logger.StdLogger(logf)
	// DERP is an HTTP/1.1 upgrade: keep HTTP/2 off the TLS listener.
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	srv.TLS = serverTLS(cert)
	srv.StartTLS()
	return ln.Addr().(*net.TCPAddr).Port
}

func startSTUN() int {
	pc := must(net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if tx, err := stun.ParseBindingRequest(buf[:n]); err == nil {
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				pc.WriteToUDPAddrPort(stun.Response(tx, src), src)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func derpMap(derpPort, stunPort int) *tailcfg.DERPMap {
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		900: {RegionID: 900, RegionCode: "lo", RegionName: "loopback", Nodes: []*tailcfg.DERPNode{{
			Name: "900a", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			DERPPort: derpPort, STUNPort: stunPort, STUNTestIP: "127.0.0.1", InsecureForTests: true,
		}}},
	}}
}
