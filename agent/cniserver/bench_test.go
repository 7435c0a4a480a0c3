package cniserver

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkProgramRoundTrip is the protocol's share of the CNI ADD latency that
// program-at-ADD adds: connect, peer check, request, answer, with a handler that
// returns at once (the kernel write is measured by the datapath's benchmarks).
func BenchmarkProgramRoundTrip(b *testing.B) {
	path := b.TempDir() + "/s/agent.sock"
	s := &Server{Path: path, Handler: func(context.Context, *Request) error { return nil }, Timeout: time.Second, allowUID: uint32(os.Getuid())}
	l, err := s.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, l) }()
	req := validRequest()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := Program(ctx, path, &req)
		if err != nil || !resp.Programmed {
			b.Fatalf("%+v, %v", resp, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
