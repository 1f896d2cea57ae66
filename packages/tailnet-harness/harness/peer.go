package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"
)

type peer struct {
	server *tsnet.Server
	info   peerInfo
}

// startPeer waits for the peer's home DERP unless waitDERP is false (-derp-pin wrong: nobody
// can connect to it).
func startPeer(controlURL, authKey, hostname, dir string, waitDERP bool, logf logger.Logf) *peer {
	server := &tsnet.Server{
		Hostname: hostname, Dir: dir, Store: new(mem.Store), ControlURL: controlURL,
		AuthKey: authKey, Ephemeral: true, Logf: logf, UserLogf: logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	status := must(server.Up(ctx))
	// Wait until the home DERP is chosen and connected, so peers can reach us at once.
	for waitDERP {
		report := server.Sys().MagicSock.Get().GetLastNetcheckReport(ctx)
		if report != nil && report.PreferredDERP != 0 &&
			!server.Sys().HealthTracker.Get().GetDERPRegionReceivedTime(report.PreferredDERP).IsZero() {
			break
		}
		if ctx.Err() != nil {
			log.Fatal("the echo peer never reached its home DERP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ip4, ip6 := server.TailscaleIPs()
	serveTCPEcho(must(server.Listen("tcp", fmt.Sprintf(":%d", tcpEchoPort))))
	for _, ip := range []netip.Addr{ip4, ip6} {
		serveUDPEcho(must(server.ListenPacket("udp", netip.AddrPortFrom(ip, udpEchoPort).String())))
	}
	serveHTTP(must(server.Listen("tcp", fmt.Sprintf(":%d", httpPort))))
	return &peer{server: server, info: peerInfo{
		Hostname: hostname, FQDN: status.Self.DNSName, IPv4: ip4.String(), IPv6: ip6.String(),
		TCPEchoPort: tcpEchoPort, UDPEchoPort: udpEchoPort, HTTPPort: httpPort,
	}}
}

func serveTCPEcho(ln net.Listener) {
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
}

func serveUDPEcho(pc net.PacketConn) {
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// helloBody is what GET / on the peer's HTTP port answers.
const helloBody = "hello from echo-peer\n"

func serveHTTP(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, helloBody)
	})
	// GET /bytes?n=N answers N bytes of the pattern (see pattern).
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil || n < 0 {
			http.Error(w, "n must be a non-negative integer", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		writePattern(w, n)
	})
	go http.Serve(ln, mux)
}
