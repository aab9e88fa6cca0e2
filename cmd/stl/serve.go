package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/serve"
)

// serveOptions are the flags of "stl serve".
type serveOptions struct {
	defense, model string
	universal      bool
	threads        int
	addr           string
	logFormat      string
	opt            serve.Options
}

func init() {
	o := serveOptions{opt: serve.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "serve --defense DIR|NAME [--model FILE|DIR] [--addr HOST:PORT]",
		Short: "Serve a defense (and a classifier behind it) over HTTP",
		Long: `serve loads a defense, and optionally a classifier, once and answers HTTP requests:

  POST /v1/purify    a PNG, JPEG or .npy body (one image, a .npy batch (N, C, H, W) or a
                     multipart/form-data batch of PNG/JPEG parts); the purified images are
                     answered in the same format (?format=png|jpeg|npy to choose)
  POST /v1/classify  the same input; JSON {"defense", "images": [{"label", "logits", "psnr"}]}
                     (needs --model)
  GET  /healthz      200 while the process runs
  GET  /readyz       200 while it takes work, 503 while draining
  GET  /metrics      Prometheus text format

Concurrent requests are batched (--batch-window, --max-batch) onto the projection's
workers; at most --queue images wait, and a request beyond that is answered 429 at
once. Bad input is a 4xx answer with a JSON body {"error", "kind"}. SIGTERM or SIGINT
stops taking connections, finishes the requests in flight (--drain-timeout) and exits 0.
One JSON log record per request goes to stderr. See docs/serve.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	d := serve.DefaultOptions()
	f.StringVar(&o.defense, "defense", "", "defense: a directory written by 'stl defense train' or a baseline name (required)")
	f.BoolVar(&o.universal, "universal", false, "with a defense directory: the universal dictionary (STL) instead of the per-cluster ones")
	f.StringVar(&o.model, "model", "", "classifier for /v1/classify: a model directory of 'stl train classifier' or any file 'stl' loads")
	f.IntVar(&o.threads, "threads", 0, "classifier threads (0: as saved)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (port 0: any free port, printed)")
	f.StringVar(&o.logFormat, "log-format", "json", "log records on stderr: json or text")
	f.Int64Var(&o.opt.MaxBodyBytes, "max-body", d.MaxBodyBytes, "largest request body in bytes (413 beyond)")
	f.IntVar(&o.opt.MaxSide, "max-side", d.MaxSide, "largest image width or height, checked before decoding (413 beyond)")
	f.IntVar(&o.opt.MaxImages, "max-images", d.MaxImages, "most images in one request (413 beyond); at most --max-batch")
	f.IntVar(&o.opt.MaxBatch, "max-batch", d.MaxBatch, "most images in one batch handed to the defense")
	f.DurationVar(&o.opt.BatchWindow, "batch-window", d.BatchWindow, "how long a batch that is not full waits for more requests")
	f.IntVar(&o.opt.QueueImages, "queue", d.QueueImages, "most images waiting for a worker (429 beyond)")
	f.IntVar(&o.opt.Workers, "workers", d.Workers, "batches computed at once (each spreads its images over every core)")
	f.DurationVar(&o.opt.Timeout, "timeout", d.Timeout, "deadline of each request (503 beyond)")
	f.DurationVar(&o.opt.DrainTimeout, "drain-timeout", d.DrainTimeout, "on SIGTERM, how long requests in flight may take to finish")
	f.IntVar(&o.opt.JPEGQuality, "jpeg-quality", d.JPEGQuality, "quality of JPEG answers")
	rootCmd.AddCommand(cmd)
}

func runServe(ctx context.Context, stdout, stderr io.Writer, o serveOptions) error {
	if o.defense == "" {
		return usagef("--defense is required")
	}
	if o.threads < 0 {
		return usagef("--threads %d, want >= 0", o.threads)
	}
	var h slog.Handler
	switch o.logFormat {
	case "json":
		h = slog.NewJSONHandler(stderr, nil)
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	default:
		return usagef("--log-format %q: want json or text", o.logFormat)
	}
	if err := o.opt.Validate(); err != nil {
		return usageError{err}
	}
	log := slog.New(h)
	t, err := experiment.LoadTransform(o.defense, o.universal)
	if err != nil {
		return err
	}
	cfg := serve.Config{Defense: t.Transform, Spec: serve.ImageSpec{Channels: t.Channels, Side: t.Resolution}, Options: o.opt, Logger: log}
	if cfg.Spec.Channels == 0 {
		cfg.Spec.Channels = 3 // a baseline takes RGB images of any size
	}
	modelName := ""
	if o.model != "" {
		m, err := experiment.LoadModel(o.model, o.threads)
		if err != nil {
			return err
		}
		c, h, w := m.InputShape()
		if h != w {
			return fmt.Errorf("model %s takes %dx%d images: the service takes square images only", o.model, h, w)
		}
		if err := t.CheckShape(c, h, w); err != nil {
			return fmt.Errorf("model %s: %w", o.model, err)
		}
		cfg.Classifier, cfg.Spec = m, serve.ImageSpec{Channels: c, Side: h}
		modelName = m.Path + " (" + m.Format + ")"
	}
	s, err := serve.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("--addr %s: %w", o.addr, err)
	}
	log.Info("serving", "addr", ln.Addr().String(), "defense", t.Name(), "defense_spec", o.defense, "model", modelName,
		"channels", cfg.Spec.Channels, "side", cfg.Spec.Side, "max_batch", o.opt.MaxBatch, "batch_window", o.opt.BatchWindow.String(),
		"queue", o.opt.QueueImages, "workers", o.opt.Workers, "timeout", o.opt.Timeout.String())
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	return s.Serve(ctx, ln)
}
