package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/tensor"
)

// Config is what a Server serves.
type Config struct {
	// Defense purifies the images (required). A randomized one is applied
	// by one batch at a time.
	Defense defense.Transform
	// Classifier, when set, serves /v1/classify; its input shape must be
	// Spec's. Its calls are serialized.
	Classifier attack.Model
	// Spec is the image shape taken (required channels).
	Spec ImageSpec
	// Options are the limits and batching parameters.
	Options Options
	// Logger receives one structured record per request and the
	// service's events; nil discards them.
	Logger *slog.Logger
}

// Server is the defense as an HTTP service (see the package
// documentation). Its handler is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	met      *serviceMetrics
	b        *batcher
	mux      *http.ServeMux
	draining atomic.Bool
	defMu    sync.Mutex // serializes a randomized defense
	clfMu    sync.Mutex // serializes the classifier
	closeB   sync.Once
}

// New checks cfg and starts the batch workers; Serve serves on a
// listener, or Handler gives the handler for another server, in which
// case Close stops the workers.
func New(cfg Config) (*Server, error) {
	if cfg.Defense == nil {
		return nil, errors.New("serve: no defense")
	}
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	if cfg.Spec.Channels < 1 || cfg.Spec.Side < 0 {
		return nil, fmt.Errorf("serve: image spec %+v: want channels >= 1 and side >= 0", cfg.Spec)
	}
	if m := cfg.Classifier; m != nil {
		if c, h, w := m.InputShape(); c != cfg.Spec.Channels || h != cfg.Spec.Side || w != cfg.Spec.Side {
			return nil, fmt.Errorf("serve: the classifier takes %dx%dx%d images, the service %dx%dx%d", c, h, w, cfg.Spec.Channels, cfg.Spec.Side, cfg.Spec.Side)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, met: newMetrics(), mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o := cfg.Options
	s.b = newBatcher(o.QueueImages, o.MaxBatch, o.BatchWindow, o.Workers, s.runBatch, func(n int) { s.met.queue.Set(float64(n)) })
	s.mux.HandleFunc("/v1/purify", func(w http.ResponseWriter, r *http.Request) { s.serveImages(w, r, "purify") })
	s.mux.HandleFunc("/v1/classify", func(w http.ResponseWriter, r *http.Request) { s.serveImages(w, r, "classify") })
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, "healthz", time.Now(), http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("/readyz", s.serveReady)
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}))
	return s, nil
}

// Handler returns the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops taking work: /readyz answers 503, new image requests 503,
// and the workers exit once the queue is empty. It returns when they have.
func (s *Server) Close() {
	s.draining.Store(true)
	s.closeB.Do(s.b.close)
	s.b.wait()
}

// Serve answers requests on ln until ctx is done, then shuts down
// gracefully: /readyz turns 503, the listener closes, requests in flight
// are finished (for at most Options.DrainTimeout) and the workers stop.
// It returns nil after a clean shutdown, or the error that ended serving.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.log.Info("draining", "timeout", s.cfg.Options.DrainTimeout.String())
	s.draining.Store(true)
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.Options.DrainTimeout)
	defer cancel()
	err := hs.Shutdown(dctx)
	s.Close()
	if err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.writeJSON(w, r, "readyz", time.Now(), http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	s.writeJSON(w, r, "readyz", time.Now(), http.StatusOK, map[string]string{"status": "ready"})
}

// Classification is /v1/classify's answer for one image.
type Classification struct {
	// Label is the class of the largest logit; Logits are the
	// classifier's outputs on the purified image.
	Label  int       `json:"label"`
	Logits []float32 `json:"logits"`
	// PSNR is the purified image's peak signal-to-noise ratio from the
	// input in dB (pixels in [0, 1]; 100 for an unchanged image).
	PSNR float64 `json:"psnr"`
}

// ClassifyResponse is /v1/classify's JSON answer.
type ClassifyResponse struct {
	Defense string           `json:"defense"`
	Images  []Classification `json:"images"`
}

// errorBody is the JSON body of an error answer.
type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// serveImages answers /v1/purify and /v1/classify.
func (s *Server) serveImages(w http.ResponseWriter, r *http.Request, endpoint string) {
	start := time.Now()
	s.met.inflight.Inc()
	defer s.met.inflight.Dec()
	fail := func(e *RequestError) { s.writeError(w, r, endpoint, start, e) }
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		fail(reqErr(http.StatusMethodNotAllowed, KindMethod, "%s %s: use POST", r.Method, r.URL.Path))
		return
	case endpoint == "classify" && s.cfg.Classifier == nil:
		fail(reqErr(http.StatusNotFound, KindNoClassifier, "the service runs without a classifier (start it with --model): use /v1/purify"))
		return
	case s.draining.Load():
		fail(reqErr(http.StatusServiceUnavailable, KindShuttingDown, "the service is shutting down"))
		return
	}
	// A full queue is answered before the body is read: rejecting must
	// cost little when clients flood the service.
	if err := s.b.wouldAdmit(s.cfg.Options.Timeout); err != nil {
		fail(s.refusal(w, err))
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && contentTypes[format] == "" {
		fail(reqErr(http.StatusBadRequest, KindBadRequest, "format=%q: want png, jpeg or npy", format))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Options.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			fail(reqErr(http.StatusRequestEntityTooLarge, KindTooLarge, "the body exceeds %d bytes (--max-body)", mb.Limit))
		} else {
			fail(reqErr(http.StatusBadRequest, KindBadRequest, "reading the body: %v", err))
		}
		return
	}
	p, err := decodeRequest(r.Header.Get("Content-Type"), body, s.cfg.Spec, s.cfg.Options)
	if err != nil {
		fail(asRequestError(err))
		return
	}
	body = nil
	if format == "" {
		format = p.format
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Options.Timeout)
	defer cancel()
	j := &job{ctx: ctx, x: p.x, classify: endpoint == "classify", done: make(chan result, 1)}
	if err := s.b.submit(j); err != nil {
		fail(s.refusal(w, err))
		return
	}
	var res result
	select {
	case res = <-j.done:
	case <-ctx.Done():
		s.b.remove(j)
		res.err = ctx.Err()
	}
	if res.err != nil {
		switch {
		case r.Context().Err() != nil:
			// The client is gone: nobody reads the answer.
			fail(reqErr(499, KindCancelled, "the client closed the request"))
		case errors.Is(res.err, context.DeadlineExceeded) || errors.Is(res.err, errTooSlow):
			fail(reqErr(http.StatusServiceUnavailable, KindTimeout, "no answer within %s (--timeout)", s.cfg.Options.Timeout))
		default:
			fail(asRequestError(res.err))
		}
		return
	}
	s.met.images.WithLabelValues(endpoint).Add(float64(p.x.Shape[0]))
	if endpoint == "classify" {
		s.writeJSON(w, r, endpoint, start, http.StatusOK, s.classification(p.x, res))
		return
	}
	out, ctype, err := encodeImages(res.y, p, format, s.cfg.Options.JPEGQuality)
	if err != nil {
		fail(reqErr(http.StatusInternalServerError, KindInternal, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	s.record(r, endpoint, start, http.StatusOK, "", p.x.Shape[0])
}

// refusal is the answer to a request the batcher does not take.
func (s *Server) refusal(w http.ResponseWriter, err error) *RequestError {
	switch err {
	case errQueueFull:
		w.Header().Set("Retry-After", "1")
		return reqErr(http.StatusTooManyRequests, KindQueueFull, "the queue is full (%d images wait, --queue): retry later", s.cfg.Options.QueueImages)
	case errTooSlow:
		w.Header().Set("Retry-After", "1")
		return reqErr(http.StatusTooManyRequests, KindQueueFull, "the images queued would not be computed within the request's deadline (--timeout %s): retry later", s.cfg.Options.Timeout)
	}
	return reqErr(http.StatusServiceUnavailable, KindShuttingDown, "the service is shutting down")
}

// classification builds /v1/classify's answer.
func (s *Server) classification(x *tensor.Tensor, res result) ClassifyResponse {
	n, k := x.Shape[0], s.cfg.Classifier.NumClasses()
	per := x.Len() / n
	out := ClassifyResponse{Defense: s.cfg.Defense.Name(), Images: make([]Classification, n)}
	for i := range out.Images {
		logits := res.logits.Data[i*k : (i+1)*k]
		psnr, _ := metrics.PSNR(res.y.Data[i*per:(i+1)*per], x.Data[i*per:(i+1)*per], 1)
		out.Images[i] = Classification{Label: tensor.Argmax(logits), Logits: logits, PSNR: math.Min(psnr, 100)}
	}
	return out
}

// asRequestError returns err as a *RequestError: bad input found by the
// decoder or the defense's own checks, else an internal error.
func asRequestError(err error) *RequestError {
	var re *RequestError
	if errors.As(err, &re) {
		return re
	}
	var ie *defense.ImageSpecError
	if errors.As(err, &ie) {
		return reqErr(http.StatusUnprocessableEntity, KindWrongSize, "%v", err)
	}
	return reqErr(http.StatusInternalServerError, KindInternal, "%v", err)
}

// runBatch is the batcher's batchFunc: the defense on every job's images
// at once, then the classifier on the purified images of the classify
// jobs. A panic below becomes an internal error of the batch's requests.
func (s *Server) runBatch(ctx context.Context, jobs []*job) (res []result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in a batch", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("serve: internal failure: %v", p)
		}
	}()
	xs := make([]*tensor.Tensor, len(jobs))
	n, nc := 0, 0
	for i, j := range jobs {
		xs[i] = j.x
		n += j.images()
		if j.classify {
			nc += j.images()
		}
	}
	s.met.batch.Observe(float64(n))
	x := concat(xs)
	var y *tensor.Tensor
	if s.cfg.Defense.Randomized() {
		s.defMu.Lock()
		y, err = s.cfg.Defense.Apply(ctx, x)
		s.defMu.Unlock()
	} else {
		y, err = s.cfg.Defense.Apply(ctx, x)
	}
	if err != nil {
		return nil, err
	}
	res = make([]result, len(jobs))
	var toClassify []*tensor.Tensor
	lo := 0
	for i, j := range jobs {
		res[i].y = y.Batch(lo, lo+j.images())
		lo += j.images()
		if j.classify {
			toClassify = append(toClassify, res[i].y)
		}
	}
	if nc == 0 {
		return res, nil
	}
	s.clfMu.Lock()
	z, err := s.cfg.Classifier.Logits(ctx, concat(toClassify))
	s.clfMu.Unlock()
	if err != nil {
		return nil, err
	}
	k := s.cfg.Classifier.NumClasses()
	row := 0
	for i, j := range jobs {
		if j.classify {
			res[i].logits = &tensor.Tensor{Shape: []int{j.images(), k}, Data: z.Data[row*k : (row+j.images())*k]}
			row += j.images()
		}
	}
	return res, nil
}

// concat stacks batches of one image shape.
func concat(xs []*tensor.Tensor) *tensor.Tensor {
	if len(xs) == 1 {
		return xs[0]
	}
	n := 0
	for _, x := range xs {
		n += x.Shape[0]
	}
	s := xs[0].Shape
	out := tensor.New(n, s[1], s[2], s[3])
	off := 0
	for _, x := range xs {
		off += copy(out.Data[off:], x.Data)
	}
	return out
}

// writeError answers e as JSON and counts it.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, endpoint string, start time.Time, e *RequestError) {
	s.met.errors.WithLabelValues(e.Kind).Inc()
	if e.Status == 499 { // nobody listens: record only
		s.record(r, endpoint, start, e.Status, e.Kind, 0)
		return
	}
	s.writeJSONKind(w, r, endpoint, start, e.Status, errorBody{Error: e.Msg, Kind: e.Kind}, e.Kind)
}

func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, endpoint string, start time.Time, status int, v any) {
	s.writeJSONKind(w, r, endpoint, start, status, v, "")
}

func (s *Server) writeJSONKind(w http.ResponseWriter, r *http.Request, endpoint string, start time.Time, status int, v any, kind string) {
	b, err := json.Marshal(v)
	if err != nil { // the answers here always encode
		status, kind = http.StatusInternalServerError, KindInternal
		b, _ = json.Marshal(errorBody{Error: err.Error(), Kind: kind})
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
	s.record(r, endpoint, start, status, kind, 0)
}

// record counts and logs one answered request.
func (s *Server) record(r *http.Request, endpoint string, start time.Time, status int, kind string, images int) {
	d := time.Since(start)
	s.met.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	s.met.latency.WithLabelValues(endpoint).Observe(d.Seconds())
	level := slog.LevelInfo
	if status >= 400 {
		level = slog.LevelWarn
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
		slog.Float64("ms", float64(d.Microseconds())/1000), slog.String("remote", r.RemoteAddr)}
	if images > 0 {
		attrs = append(attrs, slog.Int("images", images))
	}
	if kind != "" {
		attrs = append(attrs, slog.String("kind", kind))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}
