package experiment

import (
	"testing"

	"github.com/stl-defense/stl/experiment/cache"
)

// TestClassifierKeyStable pins the key of a classifier stage: a change to
// ClassifierSpec's encoding (a new field without omitempty, a renamed tag)
// would change every existing run directory's keys and recompute them.
func TestClassifierKeyStable(t *testing.T) {
	spec := ClassifierSpec{Arch: "vgg-small", Epochs: 15, BatchSize: 64, LearningRate: 0.05, Seed: 1, Threads: 2, CheckpointDir: "ignored"}
	key, err := cache.NewKey(stageVanilla, spec, cache.Key("data"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "d87a9aeabced391dc92599872fb60ba668f134c652c98ab5592fb4f1f71993bc"
	if key != want {
		t.Errorf("key = %s, want %s", key, want)
	}
}

// TestClassifierKeyCutoutDropout checks that cutout and dropout enter the
// key when set, and that zero values leave it as it was before they
// existed (TestClassifierKeyStable).
func TestClassifierKeyCutoutDropout(t *testing.T) {
	base := ClassifierSpec{Arch: "vgg-small", Epochs: 15, BatchSize: 64, LearningRate: 0.05, Seed: 1, Threads: 2}
	keys := map[cache.Key]string{}
	for name, spec := range map[string]ClassifierSpec{
		"zero":    base,
		"cutout":  func() ClassifierSpec { s := base; s.Cutout = 16; return s }(),
		"dropout": func() ClassifierSpec { s := base; s.Dropout = 0.3; return s }(),
		"both":    func() ClassifierSpec { s := base; s.Cutout, s.Dropout = 16, 0.3; return s }(),
	} {
		key, err := cache.NewKey(stageVanilla, spec, cache.Key("data"))
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := keys[key]; dup {
			t.Errorf("%s and %s have the same key", name, other)
		}
		keys[key] = name
	}
	if keys["d87a9aeabced391dc92599872fb60ba668f134c652c98ab5592fb4f1f71993bc"] != "zero" {
		t.Errorf("zero cutout and dropout changed the key: %v", keys)
	}
}
