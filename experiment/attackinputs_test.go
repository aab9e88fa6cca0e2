package experiment

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
)

// TestAttackShardsReadRows attacks a class-balanced subset of 12 images
// (PGD with its seeded random start, batches of 3) of a data set saved in
// four forms, once whole (LoadAttackJob) and in 3 shards two ways: the
// shards of one job opened by OpenAttackJob (as stl-beam attack's
// workers) and LoadAttackJob with AttackOptions.Shard (stl attack
// --shard). The merged sets equal the whole one byte for byte, and the
// opened job holds no image for the forms read by rows (.npy, uncompressed
// records, PNG folders) while it reads the gzipped records whole.
func TestAttackShardsReadRows(t *testing.T) {
	ctx := context.Background()
	model := savedModel(t)
	train, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	train, test = train.Head(20), test.Head(40)
	pgd := attack.DefaultPGDOptions()
	pgd.Steps, pgd.Seed = 2, 7
	a, err := attack.NewPGD(pgd)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		format dataset.Format
		gunzip bool
		byRows bool
	}{
		{"npy", dataset.FormatNPY, false, true},
		{"uncompressed records", dataset.FormatBinary, true, true},
		{"png folders", dataset.FormatPNG, false, true},
		{"gzipped records", dataset.FormatBinary, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if err := dataset.Save(data, train, test, c.format, nil); err != nil {
				t.Fatal(err)
			}
			if c.gunzip { // the same records uncompressed
				for name, s := range map[string]*dataset.Set{"train_32x32.bin": train, "test_32x32.bin": test} {
					if err := dataset.WriteBinaryFile(filepath.Join(data, name), s); err != nil {
						t.Fatal(err)
					}
					if err := os.Remove(filepath.Join(data, name+".gz")); err != nil {
						t.Fatal(err)
					}
				}
			}
			o := DefaultAttackOptions()
			o.Model, o.Data, o.N, o.SubsetSeed, o.Batch = model, data, 12, 3, 3
			o.Out = filepath.Join(dir, "whole")
			whole, err := LoadAttackJob(ctx, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			whole.SetAttack(a)
			if _, err := whole.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}

			o.Out = filepath.Join(dir, "opened")
			opened, err := OpenAttackJob(ctx, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := opened.Set == nil; got != c.byRows || opened.Len() != 12 {
				t.Fatalf("opened job: reads by rows %v, want %v; %d images, want 12", got, c.byRows, opened.Len())
			}
			const shards = 3
			var viaOpen, viaShard []string
			for i := range shards {
				sh := dataset.Shard{Index: i, Count: shards}
				p := filepath.Join(dir, fmt.Sprintf("open-%d", i))
				s, err := opened.Shard(ctx, sh, p)
				if err != nil {
					t.Fatal(err)
				}
				s.SetAttack(a)
				if _, err := s.Run(ctx, nil); err != nil {
					t.Fatal(err)
				}
				viaOpen = append(viaOpen, p)

				so := o
				so.Shard, so.Out = sh, filepath.Join(dir, fmt.Sprintf("shard-%d", i))
				s, err = LoadAttackJob(ctx, so, nil)
				if err != nil {
					t.Fatal(err)
				}
				if lo, hi := sh.BatchRange(12, 3); s.Set == nil || s.Set.Len() != hi-lo {
					t.Fatalf("shard %s: %v, want %d images", sh, s.Set, hi-lo)
				}
				s.SetAttack(a)
				if _, err := s.Run(ctx, nil); err != nil {
					t.Fatal(err)
				}
				viaShard = append(viaShard, so.Out)
			}
			for name, parts := range map[string][]string{"opened": viaOpen, "shard": viaShard} {
				out := filepath.Join(dir, "merged-"+name)
				if _, err := MergeAttackSets(out, parts); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{attack.AdvFile, attack.LabelsFile, attack.MetaFile} {
					got, err := os.ReadFile(filepath.Join(out, f))
					if err != nil {
						t.Fatal(err)
					}
					want, err := os.ReadFile(filepath.Join(dir, "whole", f))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s: merged %s differs from the whole run's", name, f)
					}
				}
			}
		})
	}
}
