package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// LoadOptions describe a load test: Concurrency clients, each sending the
// next of Bodies (round robin over the clients) to URL and waiting for the
// answer, until Duration has passed or Requests requests have been sent.
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
				code, err := send(lctx, client, o.URL, o.ContentType, o.Bodies[i%len(o.Bodies)])
				ms := float64(time.Since(t0).Microseconds()) / 1000
				if lctx.Err() != nil && err != nil {
					return // cut by the end of the test: not counted
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
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Images = res.OK * max(o.ImagesPerBody, 1)
	res.ImagesPerS = float64(res.Images) / res.Seconds
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

// send posts one body and drains the answer.
func send(ctx context.Context, c *http.Client, url, ctype string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
