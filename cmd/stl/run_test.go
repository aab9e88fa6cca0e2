package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
)

func TestRunFlagsOverrideConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfgFile, []byte("name: fromfile\nlambda: 0.1\nclusters: 6\narch: resnet-20\n"), 0o644)
	vanillaFile := filepath.Join(dir, "vanilla.yaml")
	os.WriteFile(vanillaFile, []byte("vanilla_model: from/file\ncutout: 8\ndropout: 0.5\n"), 0o644)
	wbFile := filepath.Join(dir, "wb.yaml")
	os.WriteFile(wbFile, []byte("whitebox: true\nwhitebox_subset: 50\nsanity_baselines: true\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"file", []string{"--config", cfgFile}, false},
		{"flag over file", []string{"--config", cfgFile, "--lambda", "0.3", "--baselines", ""}, false},
		{"sweep", []string{"--lambda-sweep", "0.1,0.4"}, false},
		{"no sweep", []string{"--lambda-sweep", ""}, false},
		{"bad sweep", []string{"--lambda-sweep", "x"}, true},
		{"bad arch", []string{"--arch", "vgg-16"}, true},
		{"bad file", []string{"--config", filepath.Join(dir, "absent.yaml")}, true},
		{"vanilla", []string{"--vanilla", "models/v50", "--cutout", "16", "--dropout", "0.3", "--retrain-epochs", "5"}, false},
		{"vanilla over file", []string{"--config", vanillaFile, "--cutout", "0"}, false},
		{"bad cutout", []string{"--cutout", "-1"}, true},
		{"bad dropout", []string{"--dropout", "1"}, true},
		{"dropout on resnet", []string{"--arch", "resnet-20", "--dropout", "0.2"}, true},
		{"whitebox subset", []string{"--whitebox", "--whitebox-subset", "40", "--sanity-baselines"}, false},
		{"whitebox subset from file", []string{"--config", wbFile, "--whitebox-subset", "20"}, false},
		{"negative whitebox subset", []string{"--whitebox", "--whitebox-subset", "-1"}, true},
		{"official", []string{"--official"}, false},
		{"official but knn", []string{"--official", "--cluster-assignment", "knn"}, false},
		{"output max", []string{"--output-mapping", "max"}, false},
		{"bad output mapping", []string{"--output-mapping", "rescale"}, true},
		{"bad cluster assignment", []string{"--cluster-assignment", "kmeans"}, true},
		{"whitebox subset above attack subset", []string{"--whitebox", "--whitebox-subset", "101"}, true},
		{"whitebox subset without whitebox", []string{"--whitebox-subset", "10"}, true},
		{"sanity baselines without whitebox", []string{"--sanity-baselines"}, true},
		{"whitebox ce only", []string{"--whitebox", "--whitebox-losses", "ce"}, false},
		{"whitebox cw kappa 0", []string{"--whitebox", "--whitebox-cw-kappa", "0"}, false},
		{"whitebox cw without ce", []string{"--whitebox", "--whitebox-losses", "cw"}, true},
		{"whitebox no loss", []string{"--whitebox", "--whitebox-losses", ""}, true},
		{"whitebox unknown loss", []string{"--whitebox", "--whitebox-losses", "ce,hinge"}, true},
		{"whitebox negative kappa", []string{"--whitebox", "--whitebox-cw-kappa", "-1"}, true},
		{"release searching l-inf budgets", []string{"--protocol", "release", "--target-dissimilarity", "0.06"}, true},
		{"release searching the l2 columns", []string{"--protocol", "release", "--target-dissimilarity", "0.06", "--attacks", "DeepFool,CW,UAP"}, false},
		{"text round8 search", []string{"--round8", "--target-dissimilarity", "0.06"}, false},
	}
	for _, tc := range tests {
		cmd := newRunCmd()
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cfg, err := runOpts[cmd].resolve(cmd)
		if tc.wantErr {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("%s: err = %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (tc.name == "defaults" || tc.name == "file") && len(cfg.LambdaSweep) != 5 {
			t.Errorf("%s: sweep %v, want the 5 defaults", tc.name, cfg.LambdaSweep)
		}
		switch tc.name {
		case "defaults":
			if cfg.Name != "cifar10-sample" || cfg.Lambda != 0.2 || cfg.Data != "sample:cifar10" {
				t.Errorf("defaults: %+v", cfg)
			}
			if cfg.VanillaModel != "" || cfg.Cutout != 0 || cfg.Dropout != 0 {
				t.Errorf("defaults: vanilla %q cutout %d dropout %v", cfg.VanillaModel, cfg.Cutout, cfg.Dropout)
			}
			if len(cfg.WhiteBoxLosses) != 2 || cfg.WhiteBoxLosses[0] != "ce" || cfg.WhiteBoxLosses[1] != "cw" || cfg.WhiteBoxCWKappa != 10 {
				t.Errorf("defaults: whitebox losses %v kappa %v", cfg.WhiteBoxLosses, cfg.WhiteBoxCWKappa)
			}
			if cfg.WhiteBoxSubset != 0 || cfg.SanityBaselines {
				t.Errorf("defaults: whitebox subset %d, sanity baselines %v", cfg.WhiteBoxSubset, cfg.SanityBaselines)
			}
		case "official":
			if cfg.ApplyOptions != defense.ReleaseApplyOptions() {
				t.Errorf("official: %+v", cfg.ApplyOptions)
			}
		case "official but knn":
			if want := (defense.ApplyOptions{Output: defense.OutputMax, Quantize8: true, Assign: defense.AssignKNN}); cfg.ApplyOptions != want {
				t.Errorf("official but knn: %+v, want %+v", cfg.ApplyOptions, want)
			}
		case "output max":
			if want := (defense.ApplyOptions{Output: defense.OutputMax}); cfg.ApplyOptions != want {
				t.Errorf("output max: %+v, want %+v", cfg.ApplyOptions, want)
			}
		case "whitebox ce only":
			if len(cfg.WhiteBoxLosses) != 1 || cfg.WhiteBoxLosses[0] != "ce" {
				t.Errorf("whitebox ce only: losses %v", cfg.WhiteBoxLosses)
			}
		case "whitebox cw kappa 0":
			if cfg.WhiteBoxCWKappa != 0 || len(cfg.WhiteBoxLosses) != 2 {
				t.Errorf("whitebox cw kappa 0: kappa %v losses %v", cfg.WhiteBoxCWKappa, cfg.WhiteBoxLosses)
			}
		case "whitebox subset":
			if !cfg.WhiteBox || cfg.WhiteBoxSubset != 40 || !cfg.SanityBaselines {
				t.Errorf("whitebox subset: %v %d %v", cfg.WhiteBox, cfg.WhiteBoxSubset, cfg.SanityBaselines)
			}
		case "whitebox subset from file":
			if !cfg.WhiteBox || cfg.WhiteBoxSubset != 20 || !cfg.SanityBaselines {
				t.Errorf("whitebox subset from file: %v %d %v", cfg.WhiteBox, cfg.WhiteBoxSubset, cfg.SanityBaselines)
			}
		case "file":
			if cfg.Name != "fromfile" || cfg.Lambda != 0.1 || cfg.Clusters != 6 || cfg.Arch != "resnet-20" {
				t.Errorf("file: %+v", cfg)
			}
		case "sweep":
			if len(cfg.LambdaSweep) != 2 || cfg.LambdaSweep[1] != 0.4 {
				t.Errorf("sweep: %v", cfg.LambdaSweep)
			}
		case "no sweep":
			if len(cfg.LambdaSweep) != 0 {
				t.Errorf("no sweep: %v", cfg.LambdaSweep)
			}
		case "vanilla":
			if cfg.VanillaModel != "models/v50" || cfg.Cutout != 16 || cfg.Dropout != 0.3 || cfg.RetrainEpochs != 5 {
				t.Errorf("vanilla: model %q cutout %d dropout %v retrain epochs %d", cfg.VanillaModel, cfg.Cutout, cfg.Dropout, cfg.RetrainEpochs)
			}
		case "vanilla over file":
			if cfg.VanillaModel != "from/file" || cfg.Cutout != 0 || cfg.Dropout != 0.5 {
				t.Errorf("vanilla over file: model %q cutout %d dropout %v", cfg.VanillaModel, cfg.Cutout, cfg.Dropout)
			}
		case "flag over file":
			if cfg.Lambda != 0.3 || cfg.Clusters != 6 || len(cfg.Baselines) != 0 {
				t.Errorf("flag over file: lambda %v clusters %d baselines %v", cfg.Lambda, cfg.Clusters, cfg.Baselines)
			}
		}
	}
}

func TestRunName(t *testing.T) {
	for in, want := range map[string]string{
		"sample:imagenet10":       "imagenet10-sample",
		"../shared/data/cifar10/": "cifar10",
		"/data/my set.tar.gz":     "my-set.tar.gz",
		"/":                       "run",
	} {
		if got := runName(in); got != want {
			t.Errorf("runName(%q) = %q, want %q", in, got, want)
		}
	}
	cmd := newRunCmd()
	cmd.ParseFlags([]string{"--data", "sample:imagenet10"})
	if cfg, err := runOpts[cmd].resolve(cmd); err != nil || cfg.Name != "imagenet10-sample" {
		t.Errorf("--data sample:imagenet10: name %q, %v", cfg.Name, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", "/data/imagenette", "--resolution", "128"}, "imagenette-128"},
		{[]string{"--data", "/data/imagenette", "--resolution", "64"}, "imagenette-64"},
		{[]string{"--resolution", "32"}, "cifar10-sample-32"},
	} {
		cmd = newRunCmd()
		cmd.ParseFlags(c.args)
		if cfg, err := runOpts[cmd].resolve(cmd); err != nil || cfg.Name != c.want {
			t.Errorf("%v: name %q, %v; want %q", c.args, cfg.Name, err, c.want)
		}
	}
	cmd = newRunCmd()
	cmd.ParseFlags([]string{"--data", "sample:imagenet10", "--name", "mine"})
	if cfg, _ := runOpts[cmd].resolve(cmd); cfg.Name != "mine" {
		t.Errorf("--name mine: name %q", cfg.Name)
	}
}

// TestRunFlagsStable pins the names, types and defaults of the flags of
// stl run, so that command lines keep working.
func TestRunFlagsStable(t *testing.T) {
	want := []string{
		"adv-epochs int 0",
		"adv-eps float64 0",
		"adv-fine-tune bool false",
		"adv-fraction float64 0",
		"adv-lr float64 0",
		"adv-step float64 0",
		"adv-steps int 0",
		"adv-train string ",
		"arch string vgg-small",
		"attack-subset int 100",
		"attacks stringSlice [FGSM-0.08,FGSM-0.04,BIM,DeepFool,CW]",
		"baselines stringSlice [all]",
		"batch-size int 64",
		"cluster-assignment string ",
		"clusters int 4",
		"config string ",
		"cutout int 0",
		"cw-binary-steps int 5",
		"cw-iterations int 100",
		"dae-epochs int 5",
		"data string sample:cifar10",
		"dict-images int 64",
		"dict-iterations int 30",
		"dropout float64 0",
		"eot-draws int 10",
		"epochs int 15",
		"filter-size int 8",
		"filters int 64",
		"grid-images int 8",
		"lambda float64 0.2",
		"lambda-sweep stringSlice [0.05,0.1,0.2,0.3,0.5]",
		"limit int 0",
		"lr float64 0.05",
		"name string cifar10-sample",
		"official bool false",
		"out string ",
		"output-mapping string ",
		"protocol string ",
		"quantize-8bit bool false",
		"resolution int 0",
		"retrain-baselines bool false",
		"retrain-epochs int 0",
		"round8 bool false",
		"sanity-baselines bool false",
		"seed int64 1",
		"target-dissimilarity float64 0",
		"target-tolerance float64 0",
		"test-limit int 0",
		"uap-eps float64 0",
		"uap-fit-images int 0",
		"uap-fooling-rate float64 0",
		"uap-max-passes int 0",
		"vanilla string ",
		"whitebox bool false",
		"whitebox-cw-kappa float64 10",
		"whitebox-losses stringSlice [ce,cw]",
		"whitebox-steps int 20",
		"whitebox-subset int 0",
		"whitebox-suite stringSlice []",
		"whitebox-suite-apgd-steps int 0",
		"whitebox-suite-cg-max-iter int 0",
		"whitebox-suite-cg-tol float64 0",
		"whitebox-suite-cluster-gradient string ",
		"whitebox-suite-eval-draws int 0",
		"whitebox-suite-queries int 0",
		"whitebox-suite-routes stringSlice []",
		"whitebox-suite-square-n int 0",
		"whitebox-suite-unroll-iterations int 0",
		"whitebox-suite-warm-start bool false",
	}
	var got []string
	newRunCmd().Flags().VisitAll(func(f *pflag.Flag) { got = append(got, f.Name+" "+f.Value.Type()+" "+f.DefValue) })
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("flags:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestConfigFlags checks that every flag of configFlags registers, that no
// two set the same Config field, and that every Config setting has a flag
// (lambda_sweep through --lambda-sweep).
func TestConfigFlags(t *testing.T) {
	var c experiment.Config
	f := pflag.NewFlagSet("run", pflag.ContinueOnError)
	base := reflect.ValueOf(&c).Pointer()
	seen := map[uintptr]string{}
	for _, b := range configFlags {
		b.Register(f, f.StringSliceVar, &c)
		if f.Lookup(b.Name) == nil {
			t.Errorf("--%s: no flag for a %T field", b.Name, b.Field(&c))
		}
		off := reflect.ValueOf(b.Field(&c)).Pointer() - base
		if other, dup := seen[off]; dup {
			t.Errorf("--%s and --%s set the same field", b.Name, other)
		}
		seen[off] = b.Name
	}
	if n := len(c.Settings()); len(seen)+1 != n {
		t.Errorf("%d flags for %d Config settings, want one each (and --lambda-sweep)", len(seen), n)
	}
}
