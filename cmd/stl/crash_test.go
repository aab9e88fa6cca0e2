package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stl-defense/stl/experiment/cache"
)

var (
	crashKills = flag.Int("crash.kills", 3, "SIGKILLs the crash test sends to stl run before letting it finish")
	crashSeed  = flag.Uint64("crash.seed", 1, "seed of the crash test's kill times")
	crashMaxMS = flag.Int("crash.max-ms", 6000, "latest kill, in milliseconds after a start")
)

// TestMain lets the crash test run this test binary as the stl command.
func TestMain(m *testing.M) {
	if os.Getenv("STL_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// crashRunArgs is a small stl run (about 10 s on 2 cores) with every stage
// kind: classifiers, defense, attacks, transforms, a baseline, retraining.
var crashRunArgs = []string{"run", "--limit", "200", "--test-limit", "100", "--epochs", "2", "--retrain-epochs", "1",
	"--attack-subset", "20", "--dae-epochs", "1", "--dict-images", "8", "--dict-iterations", "3", "--lambda-sweep", "",
	"--baselines", "jpeg,deflect", "--attacks", "FGSM-0.08,BIM", "--filters", "16", "--clusters", "2"}

func stlCommand(out string) *exec.Cmd { return stlExec(append(crashRunArgs, "--out", out)...) }

// TestRunSurvivesSIGKILL kills a small stl run at seeded random moments
// (-crash.kills times, 3 by default), lets it finish, and checks that every
// result and every stage's output are identical to an uninterrupted run's.
func TestRunSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	if out, err := stlCommand(ref).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "killed")
	killUntilDone(t, func() *exec.Cmd { return stlCommand(run) })
	compareResults(t, filepath.Join(ref, "results.json"), filepath.Join(run, "results.json"))
	compareStages(t, filepath.Join(ref, "stages"), filepath.Join(run, "stages"))
}

// killUntilDone starts the command mk makes and SIGKILLs it at seeded
// random moments, -crash.kills times at most, then runs it once more to the
// end if it has not finished by itself.
func killUntilDone(t *testing.T, mk func() *exec.Cmd) {
	t.Helper()
	rng := rand.New(rand.NewPCG(*crashSeed, 0x5eed))
	for k := 0; k < *crashKills; k++ {
		cmd := mk()
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		after := time.Duration(200+rng.IntN(max(*crashMaxMS-200, 1))) * time.Millisecond
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d exited before its kill: %v\n%s", k+1, err, log.String())
			}
			return
		case <-time.After(after):
			cmd.Process.Kill()
			<-done
			t.Logf("kill %d after %v", k+1, after)
		}
	}
	if out, err := mk().CombinedOutput(); err != nil {
		t.Fatalf("run after %d kills: %v\n%s", *crashKills, err, out)
	}
}

// stlExec is the stl command with args, run by this test binary.
func stlExec(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STL_TEST_AS_MAIN=1")
	return cmd
}

// TestAttackSurvivesSIGKILL kills `stl attack` (PGD through BPDA with EOT
// over pixel deflection, a randomized defense, in batches of 20) at seeded
// random moments, lets it finish, and checks that the adversarial set equals
// an uninterrupted run's byte for byte.
func TestAttackSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a classifier and attacks it several times")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if out, err := stlExec("train", "classifier", "--limit", "200", "--epochs", "1", "--out", model).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	attackCmd := func(out string) *exec.Cmd {
		return stlExec("attack", "--model", model, "--attack", "pgd", "--steps", "5", "--defense", "deflect",
			"--bpda", "--eot", "2", "--n", "80", "--batch", "20", "--baseline-dir", filepath.Join(dir, "baselines"), "--out", out)
	}
	ref := filepath.Join(dir, "ref")
	if out, err := attackCmd(ref).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted attack: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "killed")
	killUntilDone(t, func() *exec.Cmd { return attackCmd(run) })
	for _, f := range []string{"adv.npy", "labels.npy"} {
		a, err := os.ReadFile(filepath.Join(ref, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(run, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the uninterrupted attack's (%v)", f, err)
		}
	}
	compareResults(t, filepath.Join(ref, "meta.json"), filepath.Join(run, "meta.json"))
}

// compareResults compares two results.json files apart from times.
func compareResults(t *testing.T, a, b string) {
	t.Helper()
	load := func(path string) any {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return dropTimes(v)
	}
	ra, rb := load(a), load(b)
	if !reflect.DeepEqual(ra, rb) {
		ja, _ := json.MarshalIndent(ra, "", " ")
		jb, _ := json.MarshalIndent(rb, "", " ")
		t.Errorf("results differ from the uninterrupted run's:\n%s", firstDiff(string(ja), string(jb)))
	}
}

// dropTimes removes the fields that record when and how long, and whether a
// stage was reused.
func dropTimes(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range []string{"created", "seconds", "train_seconds", "stages", "timing"} {
			delete(v, k)
		}
		// A defense manifest hashes its auto-encoder's model.json, which
		// records the training time.
		if files, ok := v["files"].(map[string]any); ok {
			for k := range files {
				if strings.HasSuffix(k, "model.json") {
					delete(files, k)
				}
			}
		}
		for k, e := range v {
			v[k] = dropTimes(e)
		}
	case []any:
		for i, e := range v {
			v[i] = dropTimes(e)
		}
	}
	return v
}

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < min(len(la), len(lb)); i++ {
		if la[i] != lb[i] {
			return "line " + la[i] + "\n  vs " + lb[i]
		}
	}
	return "lengths differ"
}

// compareStages checks that both runs hold the same stages with the same
// keys and byte-identical files (apart from each manifest's timing).
func compareStages(t *testing.T, a, b string) {
	t.Helper()
	sa, _ := filepath.Glob(filepath.Join(a, "*", cache.ManifestFile))
	sb, _ := filepath.Glob(filepath.Join(b, "*", cache.ManifestFile))
	if len(sa) == 0 || len(sa) != len(sb) {
		t.Fatalf("%d stages in the uninterrupted run, %d in the killed one", len(sa), len(sb))
	}
	files := 0
	filepath.WalkDir(a, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		other := filepath.Join(b, rel)
		if d.Name() == cache.ManifestFile {
			var ma, mb cache.Manifest
			readJSONFile(t, path, &ma)
			readJSONFile(t, other, &mb)
			if ma.Key != mb.Key {
				t.Errorf("%s: key %s, uninterrupted %s", rel, mb.Key.Short(), ma.Key.Short())
			}
			return nil
		}
		x, _ := os.ReadFile(path)
		y, err := os.ReadFile(other)
		if strings.HasSuffix(path, ".json") && err == nil {
			var jx, jy any
			if json.Unmarshal(x, &jx) == nil && json.Unmarshal(y, &jy) == nil {
				if nx, ny := dropTimes(jx), dropTimes(jy); !reflect.DeepEqual(nx, ny) {
					bx, _ := json.MarshalIndent(nx, "", " ")
					by, _ := json.MarshalIndent(ny, "", " ")
					t.Errorf("%s differs from the uninterrupted run's apart from times:\n%s", rel, firstDiff(string(bx), string(by)))
				}
				files++
				return nil
			}
		}
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs from the uninterrupted run's (%v)", rel, err)
		}
		files++
		return nil
	})
	t.Logf("%d stages, %d files identical", len(sa), files)
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
