package experiment

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/nn"
)

// TestClassifierKeyStable pins the key of a classifier stage: a change to
// ClassifierSpec's encoding (a new field without omitempty, a renamed tag)
// would change every existing run directory's keys and recompute them.
func TestClassifierKeyStable(t *testing.T) {
	spec := ClassifierSpec{Arch: "vgg-small", Epochs: 15, BatchSize: 64, LearningRate: 0.05, Seed: 1, Threads: 2, CheckpointDir: "ignored"}
	pinKey(t, stageVanilla, spec, "d87a9aeabced391dc92599872fb60ba668f134c652c98ab5592fb4f1f71993bc")
}

// pinKey checks the key of a stage with configuration cfg that depends on
// the data key "data".
func pinKey(t *testing.T, stage string, cfg any, want cache.Key) {
	t.Helper()
	key, err := cache.NewKey(stage, cfg, cache.Key("data"))
	if err != nil {
		t.Fatal(err)
	}
	if key != want {
		t.Errorf("%s: key = %s, want %s", stage, key, want)
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

// TestSubsetKeyStable pins the key of the attacked images, on which every
// attack, white-box and sanity stage depends.
func TestSubsetKeyStable(t *testing.T) {
	pinKey(t, "subset", map[string]any{"n": 100, "seed": int64(1)}, "def4db9186e583d3e2a5f8a6b2c3524344abf12cbbe02959c531e6c46cf35ca2")
}

// TestWhiteBoxSubsetKey checks that the white-box stages depend on the
// attacked images' own key when whitebox_subset is 0 or covers them all
// (the keys of runs made before the setting existed), and on a pinned key
// of their own otherwise.
func TestWhiteBoxSubsetKey(t *testing.T) {
	test := fakeSet("fake/test", 30, 2)
	idx := make([]int, 12)
	for i := range idx {
		idx[i] = 2 * i
	}
	sub := test.Subset(idx)
	for _, tc := range []struct {
		n    int
		want cache.Key
	}{{0, "attacked"}, {12, "attacked"}, {40, "attacked"}, {6, "01d456f2054bf70f27a878f5d2c5dddfc0b8b0ea098901ef1289aed1e15a2e2a"}} {
		cfg := fakeConfig()
		cfg.WhiteBox, cfg.WhiteBoxSubset = true, tc.n
		r := &runner{cfg: cfg, subset: idx, x0: sub.Images, y0: sub.Labels, subsetKey: "attacked"}
		if err := r.whiteBoxSubset(fakeClasses); err != nil {
			t.Fatal(err)
		}
		if r.wbSubsetKey != tc.want {
			t.Errorf("whitebox_subset %d: key %s, want %s", tc.n, r.wbSubsetKey, tc.want)
		}
		if tc.want == "attacked" && (r.wbX != r.x0 || len(r.wbY) != 12) {
			t.Errorf("whitebox_subset %d: %d images, want the 12 attacked ones", tc.n, len(r.wbY))
		}
	}
}

// TestWhiteBoxKeyStable pins the keys of the white-box stages on the
// cross-entropy (their values before the CW loss existed, so that earlier
// runs reuse them) and checks that the CW-loss stages have names and keys
// of their own.
func TestWhiteBoxKeyStable(t *testing.T) {
	cfg := DefaultConfig()
	r := &runner{cfg: cfg, wbSubsetKey: "subset"}
	_, ce, err := whiteBoxPGD(cfg, LossCE)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ce)
	const settings = `{"Budget":{"norm":"linf","eps":0.031},"Steps":20,"StepFrac":0.1,"RandomStart":true,"Restarts":1,"Seed":1,"Targeted":false}`
	if string(b) != settings {
		t.Errorf("cross-entropy PGD settings encode as %s, want %s", b, settings)
	}
	_, cw, err := whiteBoxPGD(cfg, LossCW)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := whiteBoxPGD(cfg, "hinge"); err == nil {
		t.Error("unknown white-box loss accepted")
	}
	seen := map[cache.Key]string{}
	for _, tc := range []struct {
		rw     *row
		stage  string
		want   cache.Key // the cross-entropy key
		wantCW cache.Key // the CW loss's at the default kappa 10
	}{
		{&row{name: NoDefense}, "whitebox-no-defense", "d2fca1a78b6693eeeac90832e283f8f3a948ebe77b9ae259303e202aa37fea64",
			"f027346b8237f8e5f7e808920b2cf92efd5209c56b1995c025df1d6560a6d1b7"},
		{&row{name: RowSTL, key: "transform"}, "whitebox-stl", "253703ba2af70abb6ae72a99ee17b30493a600f6f9470fc22f9e4ec747a1b9e6",
			"85cd380bbf1fa51a78d673b50a342154d18641c81b2f25fd7c24f4804a496215"},
		{&row{name: "MagNet", key: "transform", backward: BackwardExact}, "whitebox-magnet", "e82c4ffb9223764ee3355fb9d44b8c61c15b10971b4e49b4de67204399c2c169",
			"ecc456d20cf91c2f23bd18ab16d7a5f48a76dc6e7f95e091bde020c4097710d4"},
	} {
		if got := whiteBoxStage(tc.rw.name, LossCE); got != tc.stage {
			t.Errorf("%s: cross-entropy stage %q, want %q", tc.rw.name, got, tc.stage)
		}
		if got := whiteBoxStage(tc.rw.name, LossCW); got != "whitebox-cw-"+tc.stage[len("whitebox-"):] {
			t.Errorf("%s: CW stage %q", tc.rw.name, got)
		}
		_, _, key, err := r.whiteBoxKey(tc.rw, LossCE, ce, "model")
		if err != nil {
			t.Fatal(err)
		}
		if key != tc.want {
			t.Errorf("%s: cross-entropy key %s, want %s (the key of runs made before the CW loss)", tc.rw.name, key, tc.want)
		}
		cfgCW, _, keyCW, err := r.whiteBoxKey(tc.rw, LossCW, cw, "model")
		if err != nil {
			t.Fatal(err)
		}
		if keyCW != tc.wantCW {
			t.Errorf("%s: CW-loss key %s, want %s", tc.rw.name, keyCW, tc.wantCW)
		}
		if cfgCW["loss"] != LossCW {
			t.Errorf("%s: CW stage configuration %v lacks the loss", tc.rw.name, cfgCW)
		}
		for _, k := range []cache.Key{key, keyCW} {
			if other, dup := seen[k]; dup {
				t.Errorf("%s: key %s already used by %s", tc.rw.name, k, other)
			}
			seen[k] = tc.rw.name
		}
		// Even with the cross-entropy's settings (a backend whose settings
		// do not name the loss) the CW stage gets a key of its own.
		_, _, keySame, err := r.whiteBoxKey(tc.rw, LossCW, ce, "model")
		if err != nil {
			t.Fatal(err)
		}
		if keySame == key {
			t.Errorf("%s: CW stage with the cross-entropy's settings has the cross-entropy's key", tc.rw.name)
		}
	}
}

// TestWhiteBoxCWKappaKey: whitebox_cw_kappa enters the CW-loss stages'
// settings, and their keys, when set, and leaves the cross-entropy's alone.
func TestWhiteBoxCWKappaKey(t *testing.T) {
	keys := func(kappa float64) (ce, cw cache.Key) {
		cfg := DefaultConfig()
		cfg.WhiteBoxCWKappa = kappa
		r := &runner{cfg: cfg, wbSubsetKey: "subset"}
		for _, loss := range []string{LossCE, LossCW} {
			_, settings, err := whiteBoxPGD(cfg, loss)
			if err != nil {
				t.Fatal(err)
			}
			_, _, key, err := r.whiteBoxKey(&row{name: RowSTL, key: "transform"}, loss, settings, "model")
			if err != nil {
				t.Fatal(err)
			}
			if loss == LossCE {
				ce = key
			} else {
				cw = key
			}
		}
		return ce, cw
	}
	ce0, cw0 := keys(0)
	ce5, cw5 := keys(5)
	if ce0 != ce5 || ce0 != "253703ba2af70abb6ae72a99ee17b30493a600f6f9470fc22f9e4ec747a1b9e6" {
		t.Errorf("whitebox_cw_kappa changed the cross-entropy key: %s, %s", ce0, ce5)
	}
	if cw0 == cw5 {
		t.Error("whitebox_cw_kappa 5 left the CW-loss key unchanged")
	}
	for _, tc := range []struct {
		kappa float64
		want  string
	}{
		{0, `{"Budget":{"norm":"linf","eps":0.031},"Steps":20,"StepFrac":0.1,"RandomStart":true,"Restarts":1,"Seed":1,"Targeted":false,"Loss":"cw"}`},
		{10, `{"Budget":{"norm":"linf","eps":0.031},"Steps":20,"StepFrac":0.1,"RandomStart":true,"Restarts":1,"Seed":1,"Targeted":false,"Loss":"cw","Kappa":10}`},
	} {
		cfg := DefaultConfig()
		cfg.WhiteBoxCWKappa = tc.kappa
		_, settings, _ := whiteBoxPGD(cfg, LossCW)
		if b, _ := json.Marshal(settings); string(b) != tc.want {
			t.Errorf("CW-loss settings at kappa %g encode as %s, want %s", tc.kappa, b, tc.want)
		}
	}
}

// TestDefenseKeyStable pins the key of the defense stage, built from the
// run's STL settings and seed (DefenseSpec), so that a run directory keeps
// its built defense.
func TestDefenseKeyStable(t *testing.T) {
	r := &runner{cfg: DefaultConfig()}
	spec := r.defenseSpec()
	spec.CheckpointDir = "ignored"
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	const enc = `{"lambda":0.2,"filters":64,"filter_size":8,"clusters":4,"dict_images":64,"dict_iterations":30,"dae_epochs":5,"seed":1}`
	if string(b) != enc {
		t.Errorf("DefenseSpec encodes as %s, want %s", b, enc)
	}
	pinKey(t, stageDefense, spec, "8c8210f78f21b2434ee6526de0da9f80c33566484e2a41eff53b696fd063c184")
}

// TestAttackKeyProtocol pins the keys of the gray-box attack stages under
// the default protocol (those of runs made before protocols existed) and
// checks that another protocol, or 8-bit rounding, changes every attack
// key and the white-box keys that round, but neither the classifier's
// nor the defense's.
func TestAttackKeyProtocol(t *testing.T) {
	type keys struct {
		attacks    map[string]cache.Key
		whitebox   cache.Key
		classifier cache.Key
		defense    cache.Key
	}
	keysOf := func(cfg Config) keys {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		r := &runner{cfg: cfg, wbSubsetKey: "subset"}
		k := keys{attacks: map[string]cache.Key{}}
		for _, name := range AllAttacks {
			_, settings, _, err := paperAttack(name, cfg, guoModel{})
			if err != nil {
				t.Fatal(err)
			}
			k.attacks[name], err = cache.NewKey(stageAttack+slug(name), r.attackKeyConfig(name, settings), "vanilla", "subset")
			if err != nil {
				t.Fatal(err)
			}
		}
		_, ce, err := whiteBoxPGD(cfg, LossCE)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, k.whitebox, err = r.whiteBoxKey(&row{name: RowSTL, key: "transform"}, LossCE, ce, "model"); err != nil {
			t.Fatal(err)
		}
		if k.classifier, err = cache.NewKey(stageVanilla, r.classifierSpec(cfg.Epochs), "data"); err != nil {
			t.Fatal(err)
		}
		if k.defense, err = cache.NewKey(stageDefense, r.defenseSpec(), "data"); err != nil {
			t.Fatal(err)
		}
		return k
	}
	text := keysOf(DefaultConfig())
	explicit := DefaultConfig()
	explicit.Protocol = "text"
	pinned := map[string]cache.Key{
		AttackFGSM008:  "4d3c053ca7e6634ab205fd5f19e78316b6c12a60349cdb9739d6097eb3a271e0",
		AttackFGSM004:  "391fc20a4d05fff12e4b1e3c2f1e9e69833ea2b9759afc6a06a4ae1afdd4a3a7",
		AttackBIM:      "8666879b223a64859dbb5285d23f6b5afcbee319f6867e053251faa382521cd7",
		AttackDeepFool: "60086b4f958fb79737e9e865b466684c037c631acd67e7af7bc334dd99a0ae30",
		AttackCW:       "43c4f15561a75ef3e3f20af106808bb821ae9e1fc67b18274f7f403fe80b89c0",
	}
	for name, want := range pinned {
		if text.attacks[name] != want {
			t.Errorf("text %s: key %s, want %s", name, text.attacks[name], want)
		}
	}
	if got := keysOf(explicit); !reflect.DeepEqual(got, text) {
		t.Errorf("protocol \"text\" changed keys: %+v, want %+v", got, text)
	}
	if text.whitebox != "253703ba2af70abb6ae72a99ee17b30493a600f6f9470fc22f9e4ec747a1b9e6" {
		t.Errorf("white-box key %s changed", text.whitebox)
	}
	release := DefaultConfig()
	release.Protocol = "release"
	rounded := DefaultConfig()
	rounded.Round8 = true
	guo := DefaultConfig()
	guo.Protocol = "guo"
	for name, cfg := range map[string]Config{"release": release, "round8": rounded, "guo": guo} {
		k := keysOf(cfg)
		for a, key := range k.attacks {
			if key == text.attacks[a] {
				t.Errorf("%s: attack %s kept the default key", name, a)
			}
		}
		if (k.whitebox == text.whitebox) == cfg.round8() {
			t.Errorf("%s: white-box key changed %v, its images rounded %v", name, k.whitebox != text.whitebox, cfg.round8())
		}
		if k.classifier != text.classifier || k.defense != text.defense {
			t.Errorf("%s changed the classifier or defense key", name)
		}
	}
	bad := DefaultConfig()
	bad.Protocol = "paper"
	var ce *ConfigError
	if err := bad.Validate(); !errors.As(err, &ce) || ce.Field != "protocol" {
		t.Errorf("protocol %q: %v", bad.Protocol, err)
	}
}

// guoModel is a model with an input normalization, for the keys of the
// guo protocol's attack stages.
type guoModel struct{ attack.Model }

func (guoModel) Config() nn.ClassifierConfig { return nn.DefaultClassifierConfig() }

// TestDefenseKeyApplyOptions: the released code's output mapping and
// cluster assignment enter the defense's key (its manifest records them),
// named as in configuration files; the default leaves the key above.
func TestDefenseKeyApplyOptions(t *testing.T) {
	r := &runner{cfg: DefaultConfig()}
	r.cfg.ApplyOptions = defense.ReleaseApplyOptions()
	b, err := json.Marshal(r.defenseSpec())
	if err != nil {
		t.Fatal(err)
	}
	const enc = `{"lambda":0.2,"filters":64,"filter_size":8,"clusters":4,"dict_images":64,"dict_iterations":30,"dae_epochs":5,` +
		`"output_mapping":"max","quantize_8bit":true,"cluster_assignment":"transductive","seed":1}`
	if string(b) != enc {
		t.Errorf("DefenseSpec encodes as %s, want %s", b, enc)
	}
	y, err := DecodeConfig(strings.NewReader("output_mapping: max\nquantize_8bit: true\ncluster_assignment: transductive\n"), false)
	if err != nil || y.ApplyOptions != defense.ReleaseApplyOptions() {
		t.Errorf("YAML: %+v, %v", y.ApplyOptions, err)
	}
	for _, bad := range []string{"output_mapping: rescale\n", "cluster_assignment: kmeans\n"} {
		var ce *ConfigError
		if _, err := DecodeConfig(strings.NewReader(bad), false); !errors.As(err, &ce) {
			t.Errorf("%q: err = %v, want *ConfigError", bad, err)
		}
	}
}

// TestSuiteKeyStable pins the key of the white-box suite's stage of a row
// at the default settings (the text protocol, no rounding), and checks
// that a rounding protocol or Config.Round8 gives it another key.
func TestSuiteKeyStable(t *testing.T) {
	key := func(c Config) cache.Key {
		t.Helper()
		c.WhiteBox, c.WhiteBoxSuite.Attacks = true, []string{"all"}
		r := &runner{cfg: c, wbSubsetKey: "subset"}
		routes, err := EvaluationRoutes(c.WhiteBoxSuite.routes(), c.WhiteBoxSuite.gradient())
		if err != nil {
			t.Fatal(err)
		}
		rw := &row{name: RowSTL, key: "transform"}
		_, _, k, err := r.suiteKey(rw, c.WhiteBoxSuite.options(c), suiteRoutes(rw, routes), "model")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	def := key(DefaultConfig())
	if def != "c6501911be2e75fc7f4b054b8d660071e6a2d451caefd9680420835668c6c0a3" {
		t.Errorf("default suite key %s, want c6501911be2e75fc7f4b054b8d660071e6a2d451caefd9680420835668c6c0a3 (the key before rounding existed)", def)
	}
	release, round8 := DefaultConfig(), DefaultConfig()
	release.Protocol, round8.Round8 = string(attack.ProtocolRelease), true
	if kr, k8 := key(release), key(round8); kr == def || k8 == def || kr != k8 {
		t.Errorf("suite keys: default %s, release %s, round8 %s: want the two rounded ones equal and apart from the default", def, kr, k8)
	}
}

// TestRound8KeysChanged: the stages whose images are rounded to 8 bits
// (the attack columns and the white-box examples under release or round8)
// have other keys than when rounding went to the nearest k/255 regardless
// of the budget (encoded "round8": true), so that such stages are
// recomputed rather than reused.
func TestRound8KeysChanged(t *testing.T) {
	release, rounded := DefaultConfig(), DefaultConfig()
	release.Protocol, rounded.Round8 = "release", true
	for name, cfg := range map[string]Config{"release": release, "round8": rounded} {
		r := &runner{cfg: cfg, wbSubsetKey: "subset"}
		for _, a := range AllAttacks {
			_, settings, _, err := paperAttack(a, cfg, guoModel{})
			if err != nil {
				t.Fatal(err)
			}
			now := r.attackKeyConfig(a, settings)
			before := maps.Clone(now)
			before["round8"] = true
			kNow, err1 := cache.NewKey(stageAttack+slug(a), now, "vanilla", "subset")
			kBefore, err2 := cache.NewKey(stageAttack+slug(a), before, "vanilla", "subset")
			if err1 != nil || err2 != nil || now["round8"] != round8Scheme || kNow == kBefore {
				t.Errorf("%s %s: round8 %v, key %s (before %s)", name, a, now["round8"], kNow, kBefore)
			}
		}
		_, ce, err := whiteBoxPGD(cfg, LossCE)
		if err != nil {
			t.Fatal(err)
		}
		now, deps, kNow, err := r.whiteBoxKey(&row{name: RowSTL, key: "transform"}, LossCE, ce, "model")
		if err != nil {
			t.Fatal(err)
		}
		before := maps.Clone(now)
		before["round8"] = true
		if kBefore, err := cache.NewKey(whiteBoxStage(RowSTL, LossCE), before, deps...); err != nil || kBefore == kNow || now["round8"] != round8Scheme {
			t.Errorf("%s white-box: round8 %v, key %s (before %s)", name, now["round8"], kNow, kBefore)
		}
	}
}
