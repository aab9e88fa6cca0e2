package fetch_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/stl-defense/stl/dataset/fetch"
)

// A local server stands in for the publisher here; with the real sources
// use fetch.Sources["cifar10"] and fetch.DefaultDir().
func ExampleFetch() {
	payload := bytes.Repeat([]byte("data"), 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "toy.tgz", time.Time{}, bytes.NewReader(payload))
	}))
	defer srv.Close()
	sum := md5.Sum(payload)
	src := fetch.Source{Name: "toy", URL: srv.URL + "/toy.tgz", File: "toy.tgz",
		Size: int64(len(payload)), MD5: hex.EncodeToString(sum[:])}

	dir, _ := os.MkdirTemp("", "fetch")
	defer os.RemoveAll(dir)
	for i := 0; i < 2; i++ {
		res, err := fetch.Fetch(context.Background(), src, dir, fetch.DefaultOptions())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("downloaded %d bytes, already there %v, checked %s\n", res.Downloaded, res.Existing, res.Verified)
	}
	// Output:
	// downloaded 4000 bytes, already there false, checked md5
	// downloaded 0 bytes, already there true, checked md5
}
