package stlbeam

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
)

func TestMain(m *testing.M) {
	beam.Init()
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

// tinyDefense trains a small defense on 40 sample images (about a second).
func tinyDefense(t *testing.T, dir string) string {
	t.Helper()
	train, _, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	o := defense.DefaultTrainOptions()
	o.DAEEpochs, o.Clusters, o.KNN, o.PCAComponents, o.KMeansRestarts = 1, 2, 3, 8, 2
	o.Filters, o.DictImages, o.DictIterations = 8, 4, 2
	d, err := defense.Train(context.Background(), train.Head(40).Images, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(dir, "def")
	if err := defense.Save(def, d); err != nil {
		t.Fatal(err)
	}
	return def
}

// TestDefendPipeline runs the sharded projection on prism and checks that
// the merged output equals one unsharded experiment.Project's, byte for
// byte; that a re-run skips every finished shard; and that a re-run after
// one part was lost projects only that shard.
func TestDefendPipeline(t *testing.T) {
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.npy")
	if err := dataset.WriteNPY(in, test.Head(23)); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.npy")
	if _, err := experiment.Project(context.Background(), experiment.ProjectOptions{Defense: def, In: in, Out: ref, Batch: 4}, nil); err != nil {
		t.Fatal(err)
	}
	o := DefendOptions{Defense: def, In: in, Out: filepath.Join(dir, "out.npy"), Batch: 4, Sharding: Sharding{Shards: 4}}
	run := func() {
		t.Helper()
		p, s := beam.NewPipelineWithRoot()
		if _, err := Defend(s, o); err != nil {
			t.Fatal(err)
		}
		if _, err := prism.Execute(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	run()
	same(t, ref, o.Out)
	same(t, filepath.Join(dir, "ref.labels.npy"), filepath.Join(dir, "out.labels.npy"))

	parts := filepath.Join(dir, "out.npy.parts")
	mtimes := func() map[string]time.Time {
		m := map[string]time.Time{}
		for i := range 4 {
			p := PartPath(parts, i, 4)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			m[p] = st.ModTime()
		}
		return m
	}
	before := mtimes()
	time.Sleep(20 * time.Millisecond)
	os.Remove(o.Out)
	lost := PartPath(parts, 2, 4)
	os.Remove(lost + ".done")
	run()
	same(t, ref, o.Out)
	for p, mt := range mtimes() {
		if changed := !mt.Equal(before[p]); changed != (p == lost) {
			t.Errorf("%s: rewritten %v, want only the lost shard rewritten", filepath.Base(p), changed)
		}
	}
}

func TestDefendOptions(t *testing.T) {
	_, s := beam.NewPipelineWithRoot()
	for _, o := range []DefendOptions{
		{In: "a.npy", Out: "b.npy"},
		{Defense: "d", In: "a.npy", Out: "b.png"},
		{Defense: "d", In: "a.npy", Out: "b.npy", Sharding: Sharding{Shards: -1}},
	} {
		if _, err := Defend(s, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func same(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil || !bytes.Equal(x, y) {
		t.Errorf("%s differs from %s (%v)", b, a, err)
	}
}
