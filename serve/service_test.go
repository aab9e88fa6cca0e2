package serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// metricValue reads /metrics and returns the value of the sample whose
// line starts with series (name and labels as Prometheus prints them), or
// -1 when absent.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return -1
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// gated is a halve that holds every batch until release is closed.
func gated() *halve {
	return &halve{gate: make(chan struct{}), started: make(chan int, 64)}
}

// postAsync posts body in the background; the answer's status arrives
// on the channel (0 for a transport error).
func postAsync(ctx context.Context, url string, body []byte) <-chan int {
	c := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c <- 0
			return
		}
		resp.Body.Close()
		c <- resp.StatusCode
	}()
	return c
}

// TestBatching holds one batch while five requests queue, then checks
// they are answered as one batch of five.
func TestBatching(t *testing.T) {
	d := gated()
	_, ts := newTestServer(t, d, false, func(o *Options) { o.MaxBatch, o.MaxImages, o.BatchWindow = 8, 2, 20*time.Millisecond })
	body := npyBytes(t, seeded(1))
	url := ts.URL + "/v1/purify"
	first := postAsync(context.Background(), url, body)
	if n := <-d.started; n != 1 {
		t.Fatalf("first batch of %d", n)
	}
	var rest []<-chan int
	for range 5 {
		rest = append(rest, postAsync(context.Background(), url, body))
	}
	waitFor(t, "five queued images", func() bool { return metricValue(t, ts.URL, "stl_serve_queue_images") == 5 })
	close(d.gate)
	for i, c := range append(rest, first) {
		if code := <-c; code != 200 {
			t.Errorf("request %d: %d", i, code)
		}
	}
	d.mu.Lock()
	sizes := append([]int(nil), d.sizes...)
	d.mu.Unlock()
	if len(sizes) != 2 || sizes[1] != 5 {
		t.Errorf("batch sizes %v, want [1 5]", sizes)
	}
	if got := metricValue(t, ts.URL, `stl_serve_batch_images_bucket{le="4"}`); got != 1 {
		t.Errorf("%g batches of <= 4 images, want 1", got)
	}
	if got := metricValue(t, ts.URL, "stl_serve_batch_images_count"); got != 2 {
		t.Errorf("%g batches counted, want 2", got)
	}
}

// TestOverload fills the queue behind a held batch: the next request is
// a 429 with Retry-After at once, and the queued ones succeed after.
func TestOverload(t *testing.T) {
	d := gated()
	_, ts := newTestServer(t, d, false, func(o *Options) { o.MaxBatch, o.MaxImages, o.QueueImages = 2, 2, 3 })
	url := ts.URL + "/v1/purify"
	one, two := npyBytes(t, seeded(1)), npyBytes(t, seeded(2))
	held := postAsync(context.Background(), url, two)
	<-d.started
	queued := []<-chan int{postAsync(context.Background(), url, two)}
	waitFor(t, "two queued images", func() bool { return metricValue(t, ts.URL, "stl_serve_queue_images") == 2 })
	queued = append(queued, postAsync(context.Background(), url, one))
	waitFor(t, "three queued images", func() bool { return metricValue(t, ts.URL, "stl_serve_queue_images") == 3 })

	start := time.Now()
	resp, body := post(t, url, "application/x-npy", one)
	checkError(t, resp, body, http.StatusTooManyRequests, KindQueueFull, "queue is full")
	if resp.Header.Get("Retry-After") == "" || time.Since(start) > time.Second {
		t.Errorf("429 after %s, Retry-After %q", time.Since(start), resp.Header.Get("Retry-After"))
	}
	close(d.gate)
	for i, c := range append(queued, held) {
		if code := <-c; code != 200 {
			t.Errorf("request %d: %d", i, code)
		}
	}
	if got := metricValue(t, ts.URL, `stl_serve_errors_total{kind="queue_full"}`); got != 1 {
		t.Errorf("%g queue_full errors, want 1", got)
	}
	if got := metricValue(t, ts.URL, "stl_serve_queue_images"); got != 0 {
		t.Errorf("queue gauge %g after the work", got)
	}
}

// TestCancellation: a queued request whose client goes away leaves the
// queue; a batch whose only client goes away is cancelled; a request
// past its deadline is a 503.
func TestCancellation(t *testing.T) {
	d := gated()
	_, ts := newTestServer(t, d, false, func(o *Options) { o.MaxBatch, o.MaxImages, o.Timeout = 1, 1, 2*time.Second })
	url := ts.URL + "/v1/purify"
	body := npyBytes(t, seeded(1))

	ctx1, cancel1 := context.WithCancel(context.Background())
	first := postAsync(ctx1, url, body)
	<-d.started
	ctx2, cancel2 := context.WithCancel(context.Background())
	second := postAsync(ctx2, url, body)
	waitFor(t, "one queued image", func() bool { return metricValue(t, ts.URL, "stl_serve_queue_images") == 1 })
	cancel2()
	if code := <-second; code != 0 {
		t.Errorf("cancelled request answered %d", code)
	}
	waitFor(t, "the queue to empty", func() bool { return metricValue(t, ts.URL, "stl_serve_queue_images") == 0 })
	// The held batch's only client leaves: the batch's context ends and
	// the defense returns (the gate stays shut).
	cancel1()
	<-first
	waitFor(t, "two cancelled requests", func() bool {
		return metricValue(t, ts.URL, `stl_serve_errors_total{kind="cancelled"}`) == 2
	})
	// A new request is computed (so the worker is free again) but held
	// past its deadline: 503 timeout.
	resp, b := post(t, url, "application/x-npy", body)
	checkError(t, resp, b, http.StatusServiceUnavailable, KindTimeout, "no answer within 2s")
	close(d.gate)
	resp, b = post(t, url, "application/x-npy", body)
	if resp.StatusCode != 200 {
		t.Errorf("after the gate opened: %s %s", resp.Status, b)
	}
}

// TestShutdownDrains serves on a loopback listener, stops the service
// while a request is being computed and checks that the request is
// answered, readiness turns 503 and Serve returns cleanly.
func TestShutdownDrains(t *testing.T) {
	d := gated()
	var logs bytes.Buffer
	var logMu sync.Mutex
	s, err := New(Config{Defense: d, Spec: ImageSpec{Channels: 3, Side: side}, Options: DefaultOptions(),
		Logger: slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	inflight := postAsync(context.Background(), base+"/v1/purify", pngBytes(t, side, side))
	<-d.started
	stop()
	waitFor(t, "draining", func() bool { return s.draining.Load() })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d", rec.Code)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("a new connection was accepted while draining")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(d.gate)
	if code := <-inflight; code != 200 {
		t.Errorf("in-flight request answered %d", code)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, want := range []string{`"msg":"request"`, `"path":"/v1/purify"`, `"status":200`, `"msg":"draining"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	// Once stopped, New work is refused rather than queued.
	if err := s.b.submit(&job{ctx: context.Background(), x: seeded(1), done: make(chan result, 1)}); !errors.Is(err, errClosed) {
		t.Errorf("submit after shutdown: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestMetricsAndHealth checks the metrics' content after a few requests
// and the health endpoints.
func TestMetricsAndHealth(t *testing.T) {
	_, ts := newTestServer(t, &halve{}, true, nil)
	for range 2 {
		if resp, b := post(t, ts.URL+"/v1/purify", "image/png", pngBytes(t, side, side)); resp.StatusCode != 200 {
			t.Fatalf("%s %s", resp.Status, b)
		}
	}
	if resp, b := post(t, ts.URL+"/v1/classify", "application/x-npy", npyBytes(t, seeded(3))); resp.StatusCode != 200 {
		t.Fatalf("%s %s", resp.Status, b)
	}
	post(t, ts.URL+"/v1/purify", "text/plain", []byte("nope"))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	for series, want := range map[string]float64{
		`stl_serve_requests_total{code="200",endpoint="purify"}`:      2,
		`stl_serve_requests_total{code="200",endpoint="classify"}`:    1,
		`stl_serve_requests_total{code="415",endpoint="purify"}`:      1,
		`stl_serve_requests_total{code="200",endpoint="healthz"}`:     1,
		`stl_serve_images_total{endpoint="purify"}`:                   2,
		`stl_serve_images_total{endpoint="classify"}`:                 3,
		`stl_serve_errors_total{kind="not_image"}`:                    1,
		`stl_serve_request_duration_seconds_count{endpoint="purify"}`: 3,
		`stl_serve_batch_images_sum`:                                  5,
		`stl_serve_queue_images`:                                      0,
	} {
		if got := metricValue(t, ts.URL, series); got != want {
			t.Errorf("%s = %g, want %g", series, got, want)
		}
	}
	for _, series := range []string{`stl_serve_request_duration_seconds_bucket{endpoint="purify",le="+Inf"}`, "process_resident_memory_bytes", "go_goroutines"} {
		if metricValue(t, ts.URL, series) < 0 {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*Options)
	}{
		{"MaxBodyBytes", func(o *Options) { o.MaxBodyBytes = 0 }},
		{"MaxSide", func(o *Options) { o.MaxSide = 0 }},
		{"MaxBatch", func(o *Options) { o.MaxBatch = 0 }},
		{"MaxImages", func(o *Options) { o.MaxImages = o.MaxBatch + 1 }},
		{"BatchWindow", func(o *Options) { o.BatchWindow = -1 }},
		{"QueueImages", func(o *Options) { o.QueueImages = o.MaxImages - 1 }},
		{"Workers", func(o *Options) { o.Workers = 0 }},
		{"Timeout", func(o *Options) { o.Timeout = 0 }},
		{"DrainTimeout", func(o *Options) { o.DrainTimeout = -1 }},
		{"JPEGQuality", func(o *Options) { o.JPEGQuality = 101 }},
	} {
		o := DefaultOptions()
		tc.edit(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != "Options."+tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	if _, err := New(Config{Spec: ImageSpec{Channels: 3, Side: side}, Options: DefaultOptions()}); err == nil {
		t.Error("New without a defense")
	}
	if _, err := New(Config{Defense: &halve{}, Classifier: meanModel{}, Spec: ImageSpec{Channels: 3, Side: 16}, Options: DefaultOptions()}); err == nil || !strings.Contains(err.Error(), "classifier takes 3x8x8") {
		t.Errorf("classifier of another size: %v", err)
	}
}

// TestLoad runs the load generator against a stub that rejects every
// third request and reports 2 s more CPU time at each /metrics read.
func TestLoad(t *testing.T) {
	var mu sync.Mutex
	n, cpu := 0, 10.0
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/metrics" {
			fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n", cpu)
			cpu += 2
			return
		}
		n++
		if n%3 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer stub.Close()
	res, err := Load(context.Background(), LoadOptions{URL: stub.URL + "/v1/purify", ContentType: "image/png", Bodies: [][]byte{{1}, {2}},
		ImagesPerBody: 2, Concurrency: 3, Requests: 30, Duration: time.Minute, MetricsURL: stub.URL + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 30 || res.OK != 20 || res.Rejected != 10 || res.Failed != 0 || res.Images != 40 ||
		res.ServerCPUSeconds != 2 || res.ImagesPerCPUSecond != 20 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.MaxMs < res.P99ms {
		t.Errorf("%+v", res)
	}
	if _, err := Load(context.Background(), LoadOptions{URL: stub.URL, Bodies: [][]byte{{1}}, Concurrency: 1, Requests: 1, MetricsURL: stub.URL + "/v1/purify"}); err == nil {
		t.Error("a metrics URL without process_cpu_seconds_total was accepted")
	}
	if _, err := Load(context.Background(), LoadOptions{URL: stub.URL, Concurrency: 1, Requests: 1}); err == nil {
		t.Error("no bodies accepted")
	}
}
