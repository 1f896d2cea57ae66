package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"tailscale.com/envknob"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"
)

// A second Go node, started on first use, measures what a user of Go's tsnet would get against
// the same echo peer: the baseline the benchmarks compare our device with. With ?derp=1 a third
// node, which never binds a UDP socket, does the same through the DERP relay only: the path
// tailscale-rs takes inside the test namespace, where it advertises no endpoint.
type goBench struct {
	dir      string // inside the harness's work directory
	derpOnly bool
	once     sync.Once
	server   *tsnet.Server
	err      error

	derpOnce sync.Once
	derp     *goBench
}

// alwaysDERP serializes the nodes that flip the process-wide TS_DEBUG_ALWAYS_USE_DERP knob.
var alwaysDERP sync.Mutex

// The relay-only sibling of b, made on first use.
func (b *goBench) viaDERP() *goBench {
	b.derpOnce.Do(func() { b.derp = &goBench{dir: b.dir + "-derp", derpOnly: true} })
	return b.derp
}

func (b *goBench) start(controlURL, authKey string) (*tsnet.Server, error) {
	b.once.Do(func() {
		hostname := "go-bench"
		if b.derpOnly {
			hostname = "go-bench-derp"
		}
		b.server = &tsnet.Server{
			Hostname: hostname, Dir: b.dir, Store: new(mem.Store), ControlURL: controlURL,
			AuthKey: authKey, Ephemeral: true, Logf: logger.Discard, UserLogf: logger.Discard,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if b.derpOnly {
			// magicsock reads the knob (envknob.RegisterBool, updated by envknob.Setenv) each time
			// it binds its UDP sockets, which a node does while it starts: set it only for that, so
			// the echo peer and the direct node keep their sockets if they ever rebind.
			alwaysDERP.Lock()
			before := envknob.String("TS_DEBUG_ALWAYS_USE_DERP")
			envknob.Setenv("TS_DEBUG_ALWAYS_USE_DERP", "true")
			defer func() {
				envknob.Setenv("TS_DEBUG_ALWAYS_USE_DERP", before)
				alwaysDERP.Unlock()
			}()
		}
		_, b.err = b.server.Up(ctx)
	})
	return b.server, b.err
}

func percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	sort.Float64s(samples)
	return samples[int(float64(len(samples)-1)*p+0.5)]
}

// serveGoBench answers /bench-go?bytes=N&rounds=M with the Go node's TCP throughput to the
// echo peer (MB/s of payload), TCP and UDP round trips of 64-byte messages (µs), and the path
// the node used to the peer ("direct" or "derp"). With &derp=1 the node sends through the relay
// only; with &warmup=W it first echoes W bytes, not measured.
func serveGoBench(direct *goBench, controlURL, authKey string, p *peer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bench := direct
		if r.FormValue("derp") == "1" {
			bench = direct.viaDERP()
		}
		bytes, err1 := strconv.Atoi(r.FormValue("bytes"))
		rounds, err2 := strconv.Atoi(r.FormValue("rounds"))
		warmup, err3 := strconv.Atoi(cmp.Or(r.FormValue("warmup"), "0"))
		if err1 != nil || err2 != nil || err3 != nil || bytes <= 0 || rounds <= 0 || warmup < 0 {
			http.Error(w, "bytes and rounds must be positive integers, warmup one not negative", http.StatusBadRequest)
			return
		}
		node, err := bench.start(controlURL, authKey)
		if err != nil {
			http.Error(w, "go-bench node: "+err.Error(), http.StatusBadGateway)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
		defer cancel()
		result, err := measure(ctx, node, p.info, bytes, warmup, rounds)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, result)
	}
}

func measure(ctx context.Context, node *tsnet.Server, target peerInfo, bytes, warmup, rounds int) (map[string]any, error) {
	conn, err := node.Dial(ctx, "tcp", net.JoinHostPort(target.IPv4, strconv.Itoa(target.TCPEchoPort)))
	if err != nil {
		return nil, fmt.Errorf("dial echo: %w", err)
	}
	defer conn.Close()
	message := make([]byte, 64)
	reply := make([]byte, 64)
	tcpRTT := make([]float64, 0, rounds)
	for range rounds {
		started := time.Now()
		if _, err := conn.Write(message); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(conn, reply); err != nil {
			return nil, err
		}
		tcpRTT = append(tcpRTT, float64(time.Since(started).Microseconds()))
	}

	// Not measured: the node's first megabytes, while its buffers and the path settle, as for
	// every subject of the bench.
	if warmup > 0 {
		if err := echoBulk(conn, warmup); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	cpuBefore := processCPUSeconds()
	started := time.Now()
	if err := echoBulk(conn, bytes); err != nil {
		return nil, err
	}
	tcpMBps := float64(bytes) / time.Since(started).Seconds() / 1e6
	bulkCPUSeconds := processCPUSeconds() - cpuBefore

	ip4, _ := node.TailscaleIPs()
	pc, err := node.ListenPacket("udp", netip.AddrPortFrom(ip4, 5700).String())
	if err != nil {
		return nil, fmt.Errorf("udp listen: %w", err)
	}
	defer pc.Close()
	to := &net.UDPAddr{IP: net.ParseIP(target.IPv4), Port: target.UDPEchoPort}
	udpRTT := make([]float64, 0, rounds)
	buf := make([]byte, 2048)
	for range rounds {
		started := time.Now()
		if _, err := pc.WriteTo(message, to); err != nil {
			return nil, err
		}
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := pc.ReadFrom(buf); err != nil {
			continue // lost: not a round trip
		}
		udpRTT = append(udpRTT, float64(time.Since(started).Microseconds()))
	}
	return map[string]any{
		"path":    pathTo(ctx, node, target.IPv4),
		"tcpMBps": tcpMBps,
		// The whole harness process: the Go bench node and the echo peer it talks to.
		"bulkCpuSeconds": bulkCPUSeconds,
		"rttP50Us":       map[string]float64{"tcp": percentile(tcpRTT, 0.5), "udp": percentile(udpRTT, 0.5)},
		"rttP99Us":       map[string]float64{"tcp": percentile(tcpRTT, 0.99), "udp": percentile(udpRTT, 0.99)},
	}, nil
}

// echoBulk writes bytes to the echo in 64 KiB chunks while reading them back.
func echoBulk(conn net.Conn, bytes int) error {
	writeErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for written := 0; written < bytes; {
			n, err := conn.Write(chunk[:min(len(chunk), bytes-written)])
			if err != nil {
				writeErr <- err
				return
			}
			written += n
		}
		writeErr <- nil
	}()
	if _, err := io.CopyN(io.Discard, conn, int64(bytes)); err != nil {
		return fmt.Errorf("bulk read: %w", err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("bulk write: %w", err)
	}
	return nil
}

// pathTo says how node reaches the peer with tailnet address ip: "direct" (a UDP endpoint),
// "derp" (through the relay) or "unknown".
func pathTo(ctx context.Context, node *tsnet.Server, ip string) string {
	lc, err := node.LocalClient()
	if err != nil {
		return "unknown"
	}
	st, err := lc.Status(ctx)
	if err != nil {
		return "unknown"
	}
	for _, ps := range st.Peer {
		for _, addr := range ps.TailscaleIPs {
			if addr.String() != ip {
				continue
			}
			switch {
			case ps.CurAddr != "":
				return "direct"
			case ps.Relay != "":
				return "derp"
			}
		}
	}
	return "unknown"
}

// processCPUSeconds is the CPU time (user and system) this process has used so far.
func processCPUSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}
