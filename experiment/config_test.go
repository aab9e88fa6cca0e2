package experiment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The paper's STL settings (section 5.1).
	if c.Lambda != 0.2 || c.Filters != 64 || c.FilterSize != 8 || c.Clusters != 4 {
		t.Errorf("defaults differ from the paper: %+v", c)
	}
	if c.retrainEpochs() != c.Epochs {
		t.Errorf("retrain epochs default = %d, want %d", c.retrainEpochs(), c.Epochs)
	}
}

func TestLoadConfig(t *testing.T) {
	for _, path := range []string{"testdata/small.yaml", "testdata/small.json"} {
		c, err := LoadConfig(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		d := DefaultConfig()
		if c.Name != "small" || c.Arch != "resnet-20" || c.Limit != 500 || c.Lambda != 0.1 {
			t.Errorf("%s: fields from the file not applied: %+v", path, c)
		}
		if len(c.Attacks) != 2 || c.Attacks[1] != AttackCW || c.Baselines == nil || len(c.Baselines) != 0 {
			t.Errorf("%s: lists = %v, %v", path, c.Attacks, c.Baselines)
		}
		if c.Epochs != d.Epochs || c.Data != d.Data || c.Clusters != d.Clusters {
			t.Errorf("%s: absent fields lost their defaults: %+v", path, c)
		}
	}
	bad := []struct {
		path, want string
	}{
		{"testdata/typo.yaml", "lamda"},
		{"testdata/badarch.json", "vgg-16"},
		{"testdata/absent.yaml", "no such file"},
	}
	for _, tc := range bad {
		_, err := LoadConfig(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %q", tc.path, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		field string
		mod   func(*Config)
	}{
		{"name", func(c *Config) { c.Name = "../x" }},
		{"data", func(c *Config) { c.Data = "" }},
		{"resolution", func(c *Config) { c.Resolution = -1 }},
		{"arch", func(c *Config) { c.Arch = "vgg16" }},
		{"limit", func(c *Config) { c.Limit = -5 }},
		{"epochs", func(c *Config) { c.Epochs = 0 }},
		{"batch_size", func(c *Config) { c.BatchSize = 0 }},
		{"learning_rate", func(c *Config) { c.LearningRate = 0 }},
		{"lambda", func(c *Config) { c.Lambda = -0.2 }},
		{"filters", func(c *Config) { c.Filters = 0 }},
		{"clusters", func(c *Config) { c.Clusters = 0 }},
		{"dict_iterations", func(c *Config) { c.DictIterations = 0 }},
		{"attack_subset", func(c *Config) { c.AttackSubset = -1 }},
		{"attacks", func(c *Config) { c.Attacks = []string{"PGD"} }},
		{"attacks", func(c *Config) { c.Attacks = []string{"BIM", "BIM"} }},
		{"attacks", func(c *Config) { c.Attacks = []string{"UAP", "UAP"} }},
		{"uap.fit_images", func(c *Config) { c.UAP.FitImages = -1 }},
		{"uap.eps", func(c *Config) { c.UAP.Eps = 1.5 }},
		{"uap.fooling_rate", func(c *Config) { c.UAP.FoolingRate = -0.1 }},
		{"uap.max_passes", func(c *Config) { c.UAP.MaxPasses = -1 }},
		{"target_dissimilarity", func(c *Config) { c.TargetDissimilarity = 1.5 }},
		{"target_dissimilarity", func(c *Config) { c.TargetDissimilarity = -0.06 }},
		{"target_dissimilarity", func(c *Config) { c.TargetTolerance = 0.001 }},
		{"target_dissimilarity", func(c *Config) { c.TargetDissimilarity, c.TargetTolerance = 0.06, 0.07 }},
		{"target_dissimilarity", func(c *Config) { c.Protocol, c.TargetDissimilarity = "release", 0.06 }},
		{"target_dissimilarity", func(c *Config) {
			c.Protocol, c.TargetDissimilarity, c.Attacks = "release", 0.06, []string{AttackBIM, AttackCW}
		}},
		{"target_dissimilarity", func(c *Config) { c.Protocol, c.Round8, c.TargetDissimilarity = "release", true, 0.06 }},
		{"baselines", func(c *Config) { c.Baselines = []string{" "} }},
		{"cutout", func(c *Config) { c.Cutout = -1 }},
		{"dropout", func(c *Config) { c.Dropout = -0.1 }},
		{"dropout", func(c *Config) { c.Dropout = 1 }},
		{"dropout", func(c *Config) { c.Dropout = math.NaN() }},
		{"dropout", func(c *Config) { c.Arch, c.Dropout = "resnet-20", 0.3 }},
		{"whitebox_subset", func(c *Config) { c.WhiteBox, c.WhiteBoxSubset = true, -1 }},
		{"whitebox_subset", func(c *Config) { c.WhiteBox, c.WhiteBoxSubset = true, c.AttackSubset+1 }},
		{"whitebox_subset", func(c *Config) { c.WhiteBoxSubset = 10 }},
		{"sanity_baselines", func(c *Config) { c.SanityBaselines = true }},
		{"whitebox_losses", func(c *Config) { c.WhiteBoxLosses = []string{"ce", "hinge"} }},
		{"whitebox_losses", func(c *Config) { c.WhiteBoxLosses = []string{"ce", "CW"} }},
		{"whitebox_losses", func(c *Config) { c.WhiteBoxLosses = []string{"ce", "cw", "ce"} }},
		{"whitebox_losses", func(c *Config) { c.WhiteBoxLosses = []string{"cw"} }},
		{"whitebox_losses", func(c *Config) { c.WhiteBoxLosses = nil }},
		{"whitebox_cw_kappa", func(c *Config) { c.WhiteBoxCWKappa = -1 }},
		{"whitebox_cw_kappa", func(c *Config) { c.WhiteBoxCWKappa = math.NaN() }},
		{"whitebox_cw_kappa", func(c *Config) { c.WhiteBoxCWKappa = math.Inf(1) }},
	}
	for _, tc := range tests {
		c := DefaultConfig()
		tc.mod(&c)
		var ce *ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: err = %v, want *ConfigError for %s", tc.field, err, tc.field)
		}
	}
}

// TestValidateRoundedSearch: a strength search is refused on L-infinity
// columns whose images are rounded to 8 bits (the release protocol's FGSM
// and BIM), with a message naming them and the way out, and accepted on
// normalized L2 columns, rounded or not, and on the universal perturbation.
func TestValidateRoundedSearch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		protocol string
		round8   bool
		attacks  []string
		refused  string // the columns named, "" when accepted
	}{
		{"release, every column", "release", false, AllAttacks, "FGSM-0.08, FGSM-0.04, BIM"},
		{"release with round8", "release", true, []string{AttackBIM}, "BIM"},
		{"release, L2 columns and UAP", "release", false, []string{AttackDeepFool, AttackCW, AttackUAP}, ""},
		{"text with round8: every column L2", "text", true, AllAttacks, ""},
		{"guo with round8", "guo", true, AllAttacks, ""},
	} {
		c := DefaultConfig()
		c.Protocol, c.Round8, c.Attacks, c.TargetDissimilarity = tc.protocol, tc.round8, tc.attacks, 0.06
		err := c.Validate()
		if tc.refused == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "target_dissimilarity" || !strings.Contains(err.Error(), tc.refused+", and with 8-bit rounding") ||
			!strings.Contains(err.Error(), "whole levels of 1/255") || !strings.Contains(err.Error(), "DeepFool, CW") {
			t.Errorf("%s: err = %v, want a target_dissimilarity error naming %s", tc.name, err, tc.refused)
		}
	}
}

func TestValidateAcceptsCutoutDropout(t *testing.T) {
	c := DefaultConfig()
	c.Cutout, c.Dropout, c.VanillaModel = 16, 0.5, "runs/vanilla"
	if err := c.Validate(); err != nil {
		t.Errorf("cutout 16, dropout 0.5, vanilla model: %v", err)
	}
	cfg, err := DecodeConfig(strings.NewReader("cutout: 8\ndropout: 0.25\nvanilla_model: models/v50\n"), false)
	if err != nil || cfg.Cutout != 8 || cfg.Dropout != 0.25 || cfg.VanillaModel != "models/v50" {
		t.Errorf("YAML cutout/dropout/vanilla_model: %+v, %v", cfg, err)
	}
	cfg, err = DecodeConfig(strings.NewReader(`{"cutout": 4, "dropout": 0.1, "vanilla_model": "m"}`), true)
	if err != nil || cfg.Cutout != 4 || cfg.Dropout != 0.1 || cfg.VanillaModel != "m" {
		t.Errorf("JSON cutout/dropout/vanilla_model: %+v, %v", cfg, err)
	}
}

func TestSettings(t *testing.T) {
	s := DefaultConfig().Settings()
	if s[0] != [2]string{"name", "cifar10-sample"} {
		t.Errorf("first setting = %v", s[0])
	}
	found := false
	for _, kv := range s {
		if kv[0] == "attacks" {
			found = kv[1] == "[FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW]"
		}
	}
	if !found {
		t.Errorf("attacks setting missing or wrong in %v", s)
	}
}

// FuzzDecodeConfig checks that no input makes the decoder panic and that
// whatever it accepts is valid.
func FuzzDecodeConfig(f *testing.F) {
	for _, p := range []string{"testdata/small.yaml", "testdata/small.json", "testdata/typo.yaml", "testdata/badarch.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, strings.HasSuffix(p, ".json"))
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		cfg, err := DecodeConfig(bytes.NewReader(data), isJSON)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Errorf("DecodeConfig accepted an invalid config: %v", verr)
			}
		}
	})
}

func TestValidateWhiteBoxSubset(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"subset below the attacked images", func(c *Config) { c.WhiteBox, c.WhiteBoxSubset = true, 20 }},
		{"subset equal to them", func(c *Config) { c.WhiteBox, c.WhiteBoxSubset = true, c.AttackSubset }},
		{"every test image attacked", func(c *Config) { c.WhiteBox, c.AttackSubset, c.WhiteBoxSubset = true, 0, 5000 }},
		{"sanity on baselines", func(c *Config) { c.WhiteBox, c.SanityBaselines = true, true }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	cfg, err := DecodeConfig(strings.NewReader("whitebox: true\nwhitebox_subset: 40\nsanity_baselines: true\n"), false)
	if err != nil || cfg.WhiteBoxSubset != 40 || !cfg.SanityBaselines {
		t.Errorf("YAML whitebox_subset/sanity_baselines: %+v, %v", cfg, err)
	}
	cfg, err = DecodeConfig(strings.NewReader(`{"whitebox": true, "whitebox_subset": 30, "sanity_baselines": true}`), true)
	if err != nil || cfg.WhiteBoxSubset != 30 || !cfg.SanityBaselines {
		t.Errorf("JSON whitebox_subset/sanity_baselines: %+v, %v", cfg, err)
	}
	_, err = DecodeConfig(strings.NewReader("whitebox: true\nwhitebox_subset: -3\n"), false)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "whitebox_subset" || !strings.Contains(err.Error(), "-3 < 0") {
		t.Errorf("whitebox_subset -3: err = %v, want a *ConfigError naming it", err)
	}
}

// TestWhiteBoxLosses checks the losses' default, their decoding from YAML
// and JSON, the error for a list without the cross-entropy, and their
// column order.
func TestWhiteBoxLosses(t *testing.T) {
	if got := DefaultConfig().WhiteBoxLosses; strings.Join(got, ",") != "ce,cw" {
		t.Errorf("default whitebox_losses = %v, want [ce cw]", got)
	}
	for _, tc := range []struct {
		in     string
		isJSON bool
		want   string
	}{
		{"whitebox: true\nwhitebox_losses: [ce]\n", false, "ce"},
		{"whitebox_losses: [cw, ce]\n", false, "cw,ce"},
		{"whitebox: true\n", false, "ce,cw"},
		{`{"whitebox_losses": ["ce"]}`, true, "ce"},
	} {
		cfg, err := DecodeConfig(strings.NewReader(tc.in), tc.isJSON)
		if err != nil || strings.Join(cfg.WhiteBoxLosses, ",") != tc.want {
			t.Errorf("%q: whitebox_losses %v, %v; want %s", tc.in, cfg.WhiteBoxLosses, err, tc.want)
		}
	}
	_, err := DecodeConfig(strings.NewReader("whitebox_losses: [cw]\n"), false)
	if err == nil || !strings.Contains(err.Error(), "sanity checks") {
		t.Errorf("whitebox_losses [cw]: %v, want an error saying why ce is needed", err)
	}
	if got := orderedLosses([]string{LossCW, LossCE}); strings.Join(got, ",") != "ce,cw" {
		t.Errorf("orderedLosses = %v, want the cross-entropy first", got)
	}
}

// configJSON is the JSON encoding of DefaultConfig with the white-box
// evaluation, its subset and the baselines' sanity checks switched on: the
// "config" of results.json, whose keys are those of configuration files.
const configJSON = `{"name":"cifar10-sample","data":"sample:cifar10","resolution":0,"arch":"vgg-small","seed":1,"limit":0,"test_limit":0,` +
	`"epochs":15,"retrain_epochs":0,"batch_size":64,"learning_rate":0.05,"cutout":0,"dropout":0,"vanilla_model":"",` +
	`"lambda":0.2,"filters":64,"filter_size":8,"clusters":4,"dict_images":64,"dict_iterations":30,"dae_epochs":5,` +
	`"attacks":["FGSM-0.08","FGSM-0.04","BIM","DeepFool","CW"],"cw_iterations":100,"cw_binary_steps":5,"attack_subset":100,` +
	`"baselines":["all"],"retrain_baselines":false,"lambda_sweep":[0.05,0.1,0.2,0.3,0.5],"whitebox":true,"whitebox_steps":20,` +
	`"eot_draws":10,"whitebox_losses":["ce","cw"],"whitebox_cw_kappa":10,"whitebox_subset":10,"sanity_baselines":true,"grid_images":8}`

// TestConfigKeysStable pins the keys and the order of Config's JSON
// encoding (results.json), checks that YAML files take the same keys, and
// pins the report's settings list (a display: settings added there, such
// as adv_train.* and whitebox_suite.*, enter no cache key at their
// defaults).
func TestConfigKeysStable(t *testing.T) {
	c := DefaultConfig()
	c.WhiteBox, c.WhiteBoxSubset, c.SanityBaselines = true, 10, true
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != configJSON {
		t.Errorf("Config encodes as\n%s\nwant\n%s", b, configJSON)
	}
	back, err := DecodeConfig(strings.NewReader(configJSON), true)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("JSON round trip: %+v, %v", back, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(configJSON), &m); err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err = DecodeConfig(bytes.NewReader(y), false)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("YAML with every key: %+v, %v", back, err)
	}
	const settings = `[["name" "cifar10-sample"] ["data" "sample:cifar10"] ["resolution" "0"] ["arch" "vgg-small"] ["seed" "1"] ["limit" "0"] ["test_limit" "0"] ` +
		`["epochs" "15"] ["retrain_epochs" "0"] ["batch_size" "64"] ["learning_rate" "0.05"] ["cutout" "0"] ["dropout" "0"] ["vanilla_model" ""] ` +
		`["lambda" "0.2"] ["filters" "64"] ["filter_size" "8"] ["clusters" "4"] ["dict_images" "64"] ["dict_iterations" "30"] ["dae_epochs" "5"] ` +
		`["output_mapping" ""] ["quantize_8bit" "false"] ["cluster_assignment" ""] ` +
		`["attacks" "[FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW]"] ["uap.fit_images" "0"] ["uap.eps" "0"] ["uap.fooling_rate" "0"] ["uap.max_passes" "0"] ` +
		`["target_dissimilarity" "0"] ["target_tolerance" "0"] ["protocol" "text"] ["round8" "false"] ["cw_iterations" "100"] ["cw_binary_steps" "5"] ["attack_subset" "100"] ` +
		`["baselines" "[all]"] ["retrain_baselines" "false"] ["lambda_sweep" "[0.05, 0.1, 0.2, 0.3, 0.5]"] ["whitebox" "false"] ["whitebox_steps" "20"] ` +
		`["eot_draws" "10"] ["whitebox_losses" "[ce, cw]"] ["whitebox_cw_kappa" "10"] ["whitebox_subset" "0"] ["sanity_baselines" "false"] ["grid_images" "8"] ` +
		`["adv_train.method" ""] ["adv_train.eps" "0"] ["adv_train.step" "0"] ["adv_train.steps" "0"] ["adv_train.fraction" "0"] ` +
		`["adv_train.epochs" "0"] ["adv_train.fine_tune" "false"] ["adv_train.learning_rate" "0"] ` +
		`["whitebox_suite.attacks" "[]"] ["whitebox_suite.routes" "[]"] ["whitebox_suite.apgd_steps" "0"] ["whitebox_suite.square_queries" "0"] ` +
		`["whitebox_suite.square_images" "0"] ["whitebox_suite.eval_draws" "0"] ["whitebox_suite.cg_tol" "0"] ["whitebox_suite.cg_max_iter" "0"] ` +
		`["whitebox_suite.unroll_iterations" "0"] ["whitebox_suite.cluster_gradient" ""] ["whitebox_suite.warm_start" "false"]]`
	if got := fmt.Sprintf("%q", DefaultConfig().Settings()); got != settings {
		t.Errorf("Settings() =\n%s\nwant\n%s", got, settings)
	}
}
