package stlbeam

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/stl-defense/stl/attack"
)

// helperEnv, when set, makes the test binary run the attack pipeline its
// value describes (AttackOptions as JSON) on prism and exit: the process
// TestAttackKillResume kills.
const helperEnv = "STLBEAM_TEST_ATTACK"

func runHelper(cfg string) int {
	var o AttackOptions
	if err := json.Unmarshal([]byte(cfg), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, s := beam.NewPipelineWithRoot()
	if _, err := Attack(s, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := prism.Execute(context.Background(), p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestAttackKillResume kills (SIGKILL) a process running a PGD pipeline
// of 12 shards once a shard has finished, then runs the pipeline again:
// it must compute exactly the shards without a finished part, leave the
// finished parts untouched and merge the set one unsharded attack writes.
func TestAttackKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("a PGD pipeline run twice")
	}
	dir := t.TempDir()
	f := attackFlags(t, "--attack", "pgd", "--steps", "10", "--model", tinyClassifier(t, dir), "--n", "48", "--batch", "4")
	ref := attackReference(t, f, filepath.Join(dir, "ref"))

	const shards = 12
	o := AttackOptions{Flags: f, Sharding: Sharding{Shards: shards, Workers: 1}}
	o.Flags.Opts.Out = filepath.Join(dir, "adv")
	o = o.withDefaults()
	cfg, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(cfg))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	finishedParts := func() map[string]time.Time {
		m := map[string]time.Time{}
		for i := range shards {
			p := partPath(o.PartsDir, i, shards, "")
			if _, err := os.Stat(p + ".done"); err == nil {
				st, err := os.Stat(filepath.Join(p, attack.AdvFile))
				if err != nil {
					t.Fatal(err)
				}
				m[p] = st.ModTime()
			}
		}
		return m
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(finishedParts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	before := finishedParts()
	if len(before) == 0 || len(before) == shards {
		t.Fatalf("%d of %d shards finished when the process was killed: want some but not all", len(before), shards)
	}
	if _, err := os.Stat(o.Flags.Opts.Out); err == nil {
		t.Fatal("the killed run wrote the merged set")
	}
	time.Sleep(20 * time.Millisecond)
	computed, skipped, err := runPipeline(t, func(s beam.Scope) error { _, err := Attack(s, o); return err })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d of %d shards; the re-run computed %d and skipped %d", len(before), shards, computed, skipped)
	if want := int64(len(before)); skipped != want || computed != shards-want {
		t.Errorf("re-run: %d shards computed, %d skipped; want %d and %d", computed, skipped, shards-want, want)
	}
	for p, mt := range before {
		if st, err := os.Stat(filepath.Join(p, attack.AdvFile)); err != nil || !st.ModTime().Equal(mt) {
			t.Errorf("%s: rewritten by the re-run", filepath.Base(p))
		}
	}
	for _, file := range []string{attack.AdvFile, attack.LabelsFile, attack.MetaFile} {
		same(t, filepath.Join(ref, file), filepath.Join(o.Flags.Opts.Out, file))
	}
}
