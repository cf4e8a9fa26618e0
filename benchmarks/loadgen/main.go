// loadgen: an open-loop HTTP load generator for the edge benchmark.
//
// Requests are issued on a fixed schedule (-rate per second) whatever the server's speed, and each
// latency is measured from the request's scheduled time, so a server that stalls cannot hide it by
// slowing the client down (coordinated omission). Bodies are read from a JSONL file and cycled.
// Prints one JSON object: requests, achieved rate, latency percentiles in ms, answers by status.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "callback URL")
	bodiesPath := flag.String("bodies", "", "JSONL file of request bodies")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("d", 60*time.Second, "how long to send")
	conns := flag.Int("c", 64, "connections at most")
	flag.Parse()

	bodies := readBodies(*bodiesPath)
	transport := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var mu sync.Mutex
	latencies := make([]float64, 0, int(*rate*duration.Seconds())+1)
	statuses := map[string]int{}
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	total := int(*rate * duration.Seconds())
	for i := 0; i < total; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(body []byte, scheduled time.Time) {
			defer wg.Done()
			status := "error"
			resp, err := client.Post(*url, "application/json", bytes.NewReader(body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = strconv.Itoa(resp.StatusCode)
			}
			elapsed := float64(time.Since(scheduled).Microseconds()) / 1000
			mu.Lock()
			latencies = append(latencies, elapsed)
			statuses[status]++
			mu.Unlock()
		}(bodies[i%len(bodies)], scheduled)
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	sort.Float64s(latencies)
	out := map[string]any{
		"requests": len(latencies), "seconds": seconds, "rate": float64(len(latencies)) / seconds,
		"p50_ms": pct(latencies, 50), "p90_ms": pct(latencies, 90), "p99_ms": pct(latencies, 99),
		"max_ms": pct(latencies, 100), "status": statuses,
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func readBodies(path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	defer f.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<22)
	for scanner.Scan() {
		bodies = append(bodies, append([]byte(nil), scanner.Bytes()...))
	}
	if len(bodies) == 0 {
		fmt.Fprintln(os.Stderr, "loadgen: no bodies in", path)
		os.Exit(2)
	}
	return bodies
}
