package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LoadOptions describe a load test: Concurrency clients, each sending the
// next of Bodies (round robin over the clients) to URL and waiting for the
// answer, until Duration has passed or Requests requests have been sent.
// Requests in flight at the end are waited for and counted, so the last
// batches' work is not thrown away.
type LoadOptions struct {
	URL         string
	ContentType string
	Bodies      [][]byte
	// ImagesPerBody is the number of images each body holds, to count
	// images/s.
	ImagesPerBody int
	Concurrency   int
	Duration      time.Duration
	// Requests bounds the requests sent (0: no bound but Duration).
	Requests int
	// Client sends the requests; nil means a client with keep-alive
	// connections for every worker.
	Client *http.Client
	// RetryAfter makes a client that is refused with a Retry-After header
	// wait that long (or until the end of the test) before its next
	// request, as a well-behaved client does; without it refused clients
	// retry at once, the worst case.
	RetryAfter bool
	// MetricsURL, when set, is the service's /metrics: the CPU time the
	// service's process spent during the test (process_cpu_seconds_total)
	// is read from it before and after.
	MetricsURL string
}

// LoadResult is what a load test measured. Latencies are of the
// successful requests, in milliseconds.
type LoadResult struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	OK          int     `json:"ok"`
	Rejected    int     `json:"rejected"` // 429 and 503
	Failed      int     `json:"failed"`   // other statuses and transport errors
	Images      int     `json:"images"`   // purified: OK * ImagesPerBody
	Seconds     float64 `json:"seconds"`
	ImagesPerS  float64 `json:"images_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	// ServerCPUSeconds is the CPU time (user + system) the service's
	// process spent during the test and ImagesPerCPUSecond the images
	// purified per second of it: a throughput that does not depend on how
	// much of a shared machine the service got. Zero without MetricsURL.
	ServerCPUSeconds   float64 `json:"server_cpu_s,omitempty"`
	ImagesPerCPUSecond float64 `json:"images_per_cpu_s,omitempty"`
	// FirstError is the first failure seen, for the report.
	FirstError string `json:"first_error,omitempty"`
}

// Load runs the load test o describes and returns its figures. It stops
// early, with ctx's error, when ctx ends.
func Load(ctx context.Context, o LoadOptions) (LoadResult, error) {
	res := LoadResult{Concurrency: o.Concurrency}
	switch {
	case len(o.Bodies) == 0:
		return res, errors.New("serve: Load: no bodies")
	case o.Concurrency < 1:
		return res, fmt.Errorf("serve: Load: concurrency %d, want >= 1", o.Concurrency)
	case o.Duration <= 0 && o.Requests <= 0:
		return res, errors.New("serve: Load: neither a duration nor a request count")
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency}}
	}
	lctx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		mu        sync.Mutex
		sent      int
		latencies []float64
	)
	next := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if o.Requests > 0 && sent >= o.Requests {
			return 0, false
		}
		sent++
		return sent - 1, true
	}
	var cpu0 float64
	if o.MetricsURL != "" {
		var err error
		if cpu0, err = ProcessCPUSeconds(ctx, client, o.MetricsURL); err != nil {
			return res, err
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				i, ok := next()
				if !ok {
					return
				}
				t0 := time.Now()
				code, wait, err := send(ctx, client, o.URL, o.ContentType, o.Bodies[i%len(o.Bodies)])
				ms := float64(time.Since(t0).Microseconds()) / 1000
				if ctx.Err() != nil {
					return // the whole test was cancelled
				}
				mu.Lock()
				res.Requests++
				switch {
				case err == nil && code == http.StatusOK:
					res.OK++
					latencies = append(latencies, ms)
				case err == nil && (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable):
					res.Rejected++
				default:
					res.Failed++
					if res.FirstError == "" {
						if err != nil {
							res.FirstError = err.Error()
						} else {
							res.FirstError = fmt.Sprintf("HTTP %d", code)
						}
					}
				}
				mu.Unlock()
				if o.RetryAfter && wait > 0 {
					select {
					case <-lctx.Done():
					case <-time.After(wait):
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Images = res.OK * max(o.ImagesPerBody, 1)
	res.ImagesPerS = float64(res.Images) / res.Seconds
	if o.MetricsURL != "" && ctx.Err() == nil {
		cpu1, err := ProcessCPUSeconds(ctx, client, o.MetricsURL)
		if err != nil {
			return res, err
		}
		res.ServerCPUSeconds = cpu1 - cpu0
		if res.ServerCPUSeconds > 0 {
			res.ImagesPerCPUSecond = float64(res.Images) / res.ServerCPUSeconds
		}
	}
	slices.Sort(latencies)
	res.P50ms, res.P90ms, res.P99ms = quantile(latencies, 0.5), quantile(latencies, 0.9), quantile(latencies, 0.99)
	if len(latencies) > 0 {
		res.MaxMs = latencies[len(latencies)-1]
	}
	return res, ctx.Err()
}

// quantile is the q-quantile of sorted values (nearest rank), 0 for none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// send posts one body and drains the answer; wait is the answer's
// Retry-After (in seconds), 0 when absent.
func send(ctx context.Context, c *http.Client, url, ctype string, body []byte) (code int, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, wait, err
}

// ProcessCPUSeconds reads process_cpu_seconds_total from the Prometheus
// text at url (a service's /metrics).
func ProcessCPUSeconds(ctx context.Context, c *http.Client, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<22))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("serve: %s: no process_cpu_seconds_total", url)
}
