package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/serve"
	"github.com/stl-defense/stl/tensor"
)

// benchServeFlags are the options of "stl bench serve".
type benchServeFlags struct {
	url, data, in, format string
	images, perRequest    int
	concurrency           []int
	duration              time.Duration
	requests              int
	serverCPU, retryAfter bool
	json                  bool
}

// benchServeReport is the JSON document printed with --json.
type benchServeReport struct {
	URL        string `json:"url"`
	Images     int    `json:"images"`
	PerRequest int    `json:"images_per_request"`
	Format     string `json:"format"`
	Go         string `json:"go"`
	machine
	Results []serve.LoadResult `json:"results"`
}

func init() {
	f := benchServeFlags{}
	cmd := &cobra.Command{
		Use:   "serve --url http://HOST:PORT/v1/purify [--concurrency 1,8,64] [--duration 20s]",
		Short: "Load-test a running stl serve: images/s and latency percentiles per concurrency",
		Long: `bench serve sends images to a running "stl serve" from this process, with each
--concurrency number of clients in turn, every client posting one request and waiting
for its answer, for --duration (or --requests requests). It prints, per concurrency, the
requests answered, rejected (429/503) and failed, the images purified per second and
the latency percentiles of the successful requests. Requests in flight when a run's time
is up are waited for and counted. With --server-cpu (default) it also reads the CPU
time the service spent from its /metrics, and prints the images purified per CPU
second: on a shared machine, a figure that does not depend on the share it got.

The images are the first --images test images of --data (default the embedded sample)
or of the float32 .npy --in, sent as PNG (one image per request, or a multipart batch of
--per-request) or as .npy (--format npy).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchServe(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "http://127.0.0.1:8080/v1/purify", "endpoint to load")
	fl.StringVar(&f.data, "data", dataset.DefaultSpec, "data set whose first test images are sent")
	fl.StringVar(&f.in, "in", "", "a float32 .npy (N, C, H, W) of images to send instead of --data")
	fl.IntVar(&f.images, "images", 64, "distinct images sent, in turn")
	fl.StringVar(&f.format, "format", "png", "request body: png or npy")
	fl.IntVar(&f.perRequest, "per-request", 1, "images per request")
	fl.IntSliceVar(&f.concurrency, "concurrency", []int{1, 8, 64}, "concurrent clients, one run per value")
	fl.DurationVar(&f.duration, "duration", 20*time.Second, "length of each run")
	fl.IntVar(&f.requests, "requests", 0, "stop each run after this many requests (0: --duration only)")
	fl.BoolVar(&f.retryAfter, "retry-after", true, "a refused client waits the answer's Retry-After before its next request (false: retries at once, the worst case)")
	fl.BoolVar(&f.serverCPU, "server-cpu", true, "read the service's CPU time from its /metrics before and after each run (images per CPU second)")
	fl.BoolVar(&f.json, "json", false, "print a JSON report")
	benchCmd.AddCommand(cmd)
}

func runBenchServe(ctx context.Context, stdout io.Writer, f benchServeFlags) error {
	switch {
	case f.format != "png" && f.format != "npy":
		return usagef("--format %q: want png or npy", f.format)
	case f.images < 1 || f.perRequest < 1:
		return usagef("--images and --per-request must be >= 1")
	case f.duration <= 0 && f.requests <= 0:
		return usagef("give a --duration or --requests")
	}
	for _, c := range f.concurrency {
		if c < 1 {
			return usagef("--concurrency %d, want >= 1", c)
		}
	}
	x, err := benchImages(f)
	if err != nil {
		return err
	}
	bodies, ctype, err := benchBodies(x, f.format, f.perRequest)
	if err != nil {
		return err
	}
	rep := benchServeReport{URL: f.url, Images: x.Shape[0], PerRequest: f.perRequest, Format: f.format, Go: runtime.Version(), machine: thisMachine()}
	if !f.json {
		fmt.Fprintf(stdout, "%s, %d distinct images, %d per %s request\n%s\n", f.url, x.Shape[0], f.perRequest, f.format, rep.machine)
		fmt.Fprintln(stdout, "clients  requests  ok  rejected  failed  images/s  p50 ms  p90 ms  p99 ms  max ms  server cpu s  images/cpu s")
	}
	metrics := ""
	if f.serverCPU {
		u, err := url.Parse(f.url)
		if err != nil {
			return usagef("--url %s: %v", f.url, err)
		}
		u.Path, u.RawQuery = "/metrics", ""
		metrics = u.String()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	for _, c := range f.concurrency {
		r, err := serve.Load(ctx, serve.LoadOptions{URL: f.url, ContentType: ctype, Bodies: bodies, ImagesPerBody: f.perRequest,
			Concurrency: c, Duration: f.duration, Requests: f.requests, Client: client, MetricsURL: metrics, RetryAfter: f.retryAfter})
		if err != nil {
			if metrics != "" && r.Requests == 0 {
				return fmt.Errorf("%w (--server-cpu=false against a service without /metrics)", err)
			}
			return err
		}
		rep.Results = append(rep.Results, r)
		if !f.json {
			fmt.Fprintf(stdout, "%7d  %8d  %d  %d  %d  %.1f  %.1f  %.1f  %.1f  %.1f  %.1f  %.1f\n", c, r.Requests, r.OK, r.Rejected, r.Failed, r.ImagesPerS,
				r.P50ms, r.P90ms, r.P99ms, r.MaxMs, r.ServerCPUSeconds, r.ImagesPerCPUSecond)
			if r.FirstError != "" {
				fmt.Fprintf(stdout, "         first failure: %s\n", r.FirstError)
			}
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}

// benchImages reads the images to send.
func benchImages(f benchServeFlags) (*tensor.Tensor, error) {
	var x *tensor.Tensor
	if f.in != "" {
		var err error
		if x, err = npy.ReadFile(f.in); err != nil {
			return nil, err
		}
		if _, _, _, _, err := x.NCHW(); err != nil {
			return nil, fmt.Errorf("--in %s: %w", f.in, err)
		}
	} else {
		_, test, err := dataset.Load(f.data)
		if err != nil {
			return nil, err
		}
		x = test.Images
	}
	if n := min(f.images, x.Shape[0]); n < x.Shape[0] {
		x = x.Batch(0, n)
	}
	if x.Shape[0] == 0 {
		return nil, fmt.Errorf("no images to send")
	}
	return x, nil
}

// benchBodies encodes the request bodies: per images each, cycling over x.
func benchBodies(x *tensor.Tensor, format string, per int) ([][]byte, string, error) {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	img := func(i int) *tensor.Tensor { return x.Batch(i%n, i%n+1) }
	var bodies [][]byte
	ctype := "application/x-npy"
	for b := 0; b < n; b++ {
		var buf bytes.Buffer
		switch {
		case format == "npy":
			t := tensor.New(per, c, h, w)
			for k := 0; k < per; k++ {
				copy(t.Data[k*c*h*w:], img(b*per+k).Data)
			}
			if err := npy.Write(&buf, t); err != nil {
				return nil, "", err
			}
		case per == 1:
			if err := pngOf(&buf, img(b)); err != nil {
				return nil, "", err
			}
			ctype = "image/png"
		default:
			mw := multipart.NewWriter(&buf)
			if err := mw.SetBoundary("stl-bench-serve-boundary"); err != nil {
				return nil, "", err
			}
			for k := 0; k < per; k++ {
				pw, err := mw.CreateFormFile("image", fmt.Sprintf("%d.png", k))
				if err != nil {
					return nil, "", err
				}
				if err := pngOf(pw, img(b*per+k)); err != nil {
					return nil, "", err
				}
			}
			mw.Close()
			ctype = mw.FormDataContentType()
		}
		bodies = append(bodies, buf.Bytes())
	}
	return bodies, ctype, nil
}

// pngOf writes the one image of x as a PNG.
func pngOf(w io.Writer, x *tensor.Tensor) error {
	im, err := dataset.CHWToImage(x.Data, dataset.Shape{C: x.Shape[1], H: x.Shape[2], W: x.Shape[3]})
	if err != nil {
		return err
	}
	return png.Encode(w, im)
}
