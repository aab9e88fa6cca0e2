package serve

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serviceMetrics are the service's Prometheus metrics, registered in a registry
// of its own (with the Go runtime's and the process's collectors).
type serviceMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // endpoint, code
	latency  *prometheus.HistogramVec // endpoint
	errors   *prometheus.CounterVec   // kind
	images   *prometheus.CounterVec   // endpoint
	batch    prometheus.Histogram
	queue    prometheus.Gauge
	inflight prometheus.Gauge
}

func newMetrics() *serviceMetrics {
	m := &serviceMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stl_serve_requests_total", Help: "HTTP requests answered, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stl_serve_request_duration_seconds", Help: "Time from a request's arrival to its answer, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms .. 33 s
		}, []string{"endpoint"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stl_serve_errors_total", Help: "Requests answered with an error, by kind (bad input, queue full, timeout, ...).",
		}, []string{"kind"}),
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stl_serve_images_total", Help: "Images purified, by endpoint.",
		}, []string{"endpoint"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stl_serve_batch_images", Help: "Images per batch handed to the defense.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stl_serve_queue_images", Help: "Images waiting for a worker.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stl_serve_inflight_requests", Help: "Requests being answered.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.errors, m.images, m.batch, m.queue, m.inflight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
