package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/dataset/fetch"
)

func TestDataShowAndExport(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	if err := runDataShow(ctx, &out, &errb, dataShowOptions{data: dataset.DefaultSpec}, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "no --data given") || !strings.Contains(out.String(), "sample:cifar10/test: 500 images, 3 channels, 32x32") {
		t.Errorf("show printed %q / %q", out.String(), errb.String())
	}
	dir := t.TempDir()
	o := dataExportOptions{data: "sample:cifar10", out: dir, format: "npy", limit: 20, seed: 3}
	if err := runDataExport(ctx, &out, &errb, o, false); err != nil {
		t.Fatal(err)
	}
	train, test, err := dataset.Load(dir)
	if err != nil || train.Len() != 20 || test.Len() != 20 {
		t.Fatalf("exported set: %v", err)
	}
	for c, n := range train.ClassCounts() {
		if n != 2 {
			t.Errorf("class %d: %d images, want 2", c, n)
		}
	}
	bad := []dataExportOptions{
		{data: "sample:cifar10", format: "npy"},
		{data: "sample:cifar10", out: dir, format: "gif"},
		{data: "sample:cifar10", out: dir, format: "bin", limit: -1},
	}
	for _, b := range bad {
		var ue usageError
		if err := runDataExport(ctx, &out, &errb, b, false); !errors.As(err, &ue) {
			t.Errorf("%+v: err = %v, want a usage error", b, err)
		}
	}
}

func TestDataFetch(t *testing.T) {
	payload := bytes.Repeat([]byte("stl"), 5000)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(payload))
	}))
	defer ts.Close()
	sum := md5.Sum(payload)
	fetch.Sources["toy"] = fetch.Source{Name: "toy", URL: ts.URL + "/x", File: "x.bin", Size: int64(len(payload)), MD5: hex.EncodeToString(sum[:])}
	defer delete(fetch.Sources, "toy")
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if err := runDataFetch(context.Background(), &out, &errb, []string{"toy"}, dataFetchOptions{dir: dir, retries: 1}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "toy", "x.bin")); !bytes.Equal(got, payload) {
		t.Error("fetched file differs")
	}
	if !strings.Contains(out.String(), "md5 verified") {
		t.Errorf("output %q", out.String())
	}
	var ue usageError
	if err := runDataFetch(context.Background(), &out, &errb, []string{"nope"}, dataFetchOptions{dir: dir}); !errors.As(err, &ue) {
		t.Errorf("unknown name: err = %v", err)
	}
}

func TestDataConvert(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	o := dataConvertOptions{data: "../../dataset/testdata/folder", out: out, size: 16}
	if err := runDataConvert(context.Background(), &stdout, &stderr, o); err != nil {
		t.Fatal(err)
	}
	train, test, err := dataset.Load(out)
	if err != nil || train.Len() != 3 || test.Len() != 1 || train.Shape() != (dataset.Shape{C: 3, H: 16, W: 16}) {
		t.Fatalf("converted set: %v", err)
	}
	var ue usageError
	for _, bad := range []dataConvertOptions{{out: out, size: 16}, {data: "x", out: out}} {
		if err := runDataConvert(context.Background(), &stdout, &stderr, bad); !errors.As(err, &ue) {
			t.Errorf("%+v: err = %v, want a usage error", bad, err)
		}
	}
}
