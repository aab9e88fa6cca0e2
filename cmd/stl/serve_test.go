package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/serve"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeCommand serves a small trained defense and an untrained
// classifier on a free loopback port, purifies and classifies sample
// images (with stl bench serve as the client too), and stops the service
// as SIGTERM does.
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	model := savedClassifier(t)
	o := serveOptions{defense: def, model: model, addr: "127.0.0.1:0", logFormat: "json", opt: serve.DefaultOptions()}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, &stdout, &stderr, o) }()
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; time.Sleep(10 * time.Millisecond) {
		if _, addr, ok := strings.Cut(stdout.String(), "listening on "); ok {
			base = strings.TrimSpace(addr)
		} else if time.Now().After(deadline) {
			t.Fatalf("no address printed; stderr:\n%s", stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		default:
		}
	}
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := pngOf(&img, test.Images.Batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/v1/purify", "image/png", bytes.NewReader(img.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := png.Decode(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || out.Bounds().Dx() != 32 {
		t.Fatalf("purify: %s, %v", resp.Status, err)
	}
	resp, err = http.Post(base+"/v1/classify", "image/png", bytes.NewReader(img.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var cl serve.ClassifyResponse
	err = json.NewDecoder(resp.Body).Decode(&cl)
	resp.Body.Close()
	if err != nil || len(cl.Images) != 1 || len(cl.Images[0].Logits) != 10 || cl.Defense != "STL (cluster)" || !(cl.Images[0].PSNR > 15) {
		t.Fatalf("classify: %s %+v %v", resp.Status, cl, err)
	}

	// The load generator against it: 6 requests from 2 clients, all
	// answered.
	var bench bytes.Buffer
	bf := benchServeFlags{url: base + "/v1/purify", data: dataset.DefaultSpec, images: 3, format: "png", perRequest: 1,
		concurrency: []int{2}, requests: 6, duration: time.Minute, json: true}
	if err := runBenchServe(context.Background(), &bench, bf); err != nil {
		t.Fatal(err)
	}
	var rep benchServeReport
	if err := json.Unmarshal(bench.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].OK != 6 || rep.Results[0].Images != 6 || rep.Results[0].P50ms <= 0 || rep.CPU == "" {
		t.Errorf("bench report %s", bench.String())
	}
	bf.format, bf.perRequest = "npy", 2
	bench.Reset()
	if err := runBenchServe(context.Background(), &bench, bf); err != nil || json.Unmarshal(bench.Bytes(), &rep) != nil || rep.Results[0].Images != 12 {
		t.Errorf("npy bench: %v %s", err, bench.String())
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	for _, want := range []string{`"msg":"serving"`, `"defense":"STL (cluster)"`, `"path":"/v1/classify"`, `"msg":"stopped"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

func TestServeUsage(t *testing.T) {
	ok := serveOptions{defense: "jpeg", addr: "127.0.0.1:0", logFormat: "json", opt: serve.DefaultOptions()}
	with := func(f func(*serveOptions)) serveOptions { o := ok; f(&o); return o }
	for _, tc := range []struct {
		name  string
		o     serveOptions
		want  string
		usage bool
	}{
		{"no defense", with(func(o *serveOptions) { o.defense = "" }), "--defense is required", true},
		{"log format", with(func(o *serveOptions) { o.logFormat = "xml" }), `--log-format "xml"`, true},
		{"max images", with(func(o *serveOptions) { o.opt.MaxImages = 65 }), "MaxImages", true},
		{"queue", with(func(o *serveOptions) { o.opt.QueueImages = 1 }), "QueueImages", true},
		{"unknown defense", with(func(o *serveOptions) { o.defense = "no-such" }), "neither a defense directory nor a baseline", false},
		{"absent model", with(func(o *serveOptions) { o.model = t.TempDir() + "/absent" }), "no such file", false},
		{"address", with(func(o *serveOptions) { o.addr = "256.0.0.1:1" }), "--addr", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			checkCommandError(t, runServe(context.Background(), &stdout, &stderr, tc.o), tc.want, tc.usage)
		})
	}
}
