package cache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/experiment/cache"
)

func Example() {
	dir, _ := os.MkdirTemp("", "run")
	defer os.RemoveAll(dir)
	store, _ := cache.Open(dir)

	type trainConfig struct{ Epochs int }
	for _, epochs := range []int{3, 3, 5} {
		cfg := trainConfig{epochs}
		key, _ := cache.NewKey("train", cfg)
		_, cached, _ := store.Do(context.Background(), "train", key, cfg, nil, func(ctx context.Context, out string) error {
			return os.WriteFile(filepath.Join(out, "model.txt"), fmt.Appendf(nil, "%d epochs", epochs), 0o644)
		})
		fmt.Printf("epochs=%d cached=%v\n", epochs, cached)
	}
	// Output:
	// epochs=3 cached=false
	// epochs=3 cached=true
	// epochs=5 cached=false
}
