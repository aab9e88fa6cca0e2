package defense

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/tensor"
)

// savableMean is meanEncoder with a file format, registered as "test-mean".
type savableMean struct{ meanEncoder }

func (*savableMean) EncoderFormat() string { return "test-mean" }

func (e *savableMean) SaveDir(dir string) error {
	js, _ := json.Marshal(map[string]int{"res": e.res})
	return safefile.WriteBytes(filepath.Join(dir, "enc.json"), js)
}

func init() {
	RegisterEncoderFormat("test-mean", func(dir string) (Encoder, error) {
		b, err := os.ReadFile(filepath.Join(dir, "enc.json"))
		if err != nil {
			return nil, err
		}
		var v map[string]int
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return &savableMean{meanEncoder{res: v["res"]}}, nil
	})
}

// testDictionary returns an (R, R, C, M) dictionary whose values encode seed.
func testDictionary(r, c, m int, seed float32) *csc.Dictionary {
	d := &csc.Dictionary{M: m, C: c, R: r, S: r, Filters: make([]float32, m*c*r*r)}
	for i := range d.Filters {
		d.Filters[i] = seed + float32(i%7)/10
	}
	return d
}

// testDefense builds a small but complete defense on colour images.
func testDefense(t *testing.T) *Defense {
	t.Helper()
	enc := &savableMean{meanEncoder{res: 32}}
	train, _ := colourImages(45, 32, testColours, 1)
	s, km := fitStratifier(t, enc, train, 3)
	_ = s
	raw, err := encodeCodes(context.Background(), enc, nil, 32, train, nil)
	if err != nil {
		t.Fatal(err)
	}
	pca := s.pca
	codes, err := pca.Transform(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	d := &Defense{
		Manifest: Manifest{
			Resolution: 32, Channels: 3, EncoderResolution: 32, LatentDim: pca.In(), PCAComponents: pca.Out(),
			Clusters: 3, ClusterSizes: km.Sizes, KNN: 5, Filters: 4, FilterSize: 2, Lambda: 0.2,
			TrainImages: 45, Seed: 1,
		},
		Universal: testDictionary(2, 3, 4, 0),
		Encoder:   enc,
		PCA:       pca,
		Centers:   km.Centers,
		Codes:     codes,
		Labels:    km.Labels,
	}
	for k := 0; k < 3; k++ {
		d.Dictionaries = append(d.Dictionaries, testDictionary(2, 3, 4, float32(k+1)))
	}
	return d
}

func TestArtifactRoundTrip(t *testing.T) {
	d := testDefense(t)
	dir := filepath.Join(t.TempDir(), "def")
	if err := Save(dir, d); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Universal.Filters, d.Universal.Filters) {
		t.Error("universal dictionary differs after the round trip")
	}
	for k := range d.Dictionaries {
		if !slices.Equal(got.Dictionaries[k].Filters, d.Dictionaries[k].Filters) {
			t.Errorf("dictionary %d differs after the round trip", k)
		}
	}
	if !slices.Equal(got.Codes.Data, d.Codes.Data) || !slices.Equal(got.Labels, d.Labels) ||
		!slices.Equal(got.Centers.Data, d.Centers.Data) || !slices.Equal(got.PCA.Components.Data, d.PCA.Components.Data) ||
		!slices.Equal(got.PCA.Mean, d.PCA.Mean) {
		t.Error("stratification model differs after the round trip")
	}
	if got.Manifest.Lambda != 0.2 || got.Manifest.KNN != 5 || got.Manifest.EncoderFormat != "test-mean" || len(got.Manifest.Files) != 11 {
		t.Errorf("manifest after the round trip: %+v", got.Manifest)
	}
	// The loaded defense routes images like the original.
	x, _ := colourImages(12, 32, testColours, 9)
	s0, err := d.Stratifier()
	if err != nil {
		t.Fatal(err)
	}
	s1, err := got.Stratifier()
	if err != nil {
		t.Fatal(err)
	}
	a0, _ := s0.Assign(context.Background(), x)
	a1, err := s1.Assign(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a0, a1) {
		t.Errorf("assignments differ after the round trip: %v vs %v", a0, a1)
	}
}

// projectorFromDict is a ProjectorFactory for tests: it fills the output
// with a tenth of the dictionary's first value (in [0, 1] for the test
// defense's dictionaries, so that the default clip keeps it).
func projectorFromDict(dict *csc.Dictionary, lambda float64) (Projector, error) {
	return &fillProjector{value: dict.Filters[0] / 10}, nil
}

func TestDefenseTransforms(t *testing.T) {
	d := testDefense(t)
	uni, strat, err := d.Transforms(projectorFromDict)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := colourImages(6, 32, testColours, 4)
	y, err := uni.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if y.Data[0] != 0 {
		t.Errorf("STL used dictionary with first value %g, want the universal one (0)", y.Data[0])
	}
	z, err := strat.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := d.Stratifier()
	assign, _ := s.Assign(context.Background(), x)
	for i, k := range assign {
		if v := z.Data[i*3*32*32]; v != float32(k+1)/10 {
			t.Errorf("image %d: projected with dictionary %g, want cluster %d's", i, 10*v-1, k)
		}
	}
	// Another resolution or channel count is refused with an *ImageSpecError.
	for _, shape := range [][]int{{2, 3, 64, 64}, {2, 1, 32, 32}, {2, 3, 32, 31}} {
		var ie *ImageSpecError
		for _, tr := range []Transform{uni, strat} {
			if _, err := tr.Apply(context.Background(), tensor.New(shape...)); !errors.As(err, &ie) {
				t.Errorf("%s on %v: err = %v, want *ImageSpecError", tr.Name(), shape, err)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	d := testDefense(t)
	base := filepath.Join(t.TempDir(), "good")
	if err := Save(base, d); err != nil {
		t.Fatal(err)
	}
	copyDir := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(dst, os.DirFS(base)); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	editManifest := func(f func(m map[string]any)) func(string) {
		return func(dir string) {
			p := filepath.Join(dir, ManifestFile)
			b, _ := os.ReadFile(p)
			var m map[string]any
			json.Unmarshal(b, &m)
			f(m)
			b, _ = json.Marshal(m)
			os.WriteFile(p, b, 0o644)
		}
	}
	tests := []struct {
		name   string
		breakf func(dir string)
		file   string // the file the error must name
		is     error
		text   string
	}{
		{"no manifest", func(dir string) { os.Remove(filepath.Join(dir, ManifestFile)) }, "", ErrNotDefense, "no manifest.json"},
		{"missing dictionary", func(dir string) { os.Remove(filepath.Join(dir, "dict-cluster-02.npy")) }, "dict-cluster-02.npy", fs.ErrNotExist, "missing"},
		{"truncated codes", func(dir string) {
			p := filepath.Join(dir, codesFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, codesFile, nil, "SHA-256"},
		{"malformed manifest", func(dir string) { os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{"), 0o644) }, ManifestFile, nil, "malformed"},
		{"other format", editManifest(func(m map[string]any) { m["format"] = "something" }), ManifestFile, nil, "format"},
		{"newer version", editManifest(func(m map[string]any) { m["version"] = 99 }), ManifestFile, nil, "version 99"},
		{"unknown encoder", editManifest(func(m map[string]any) { m["encoder_format"] = "nope" }), daeDir, nil, "unknown encoder format"},
		{"altered encoder", func(dir string) { os.WriteFile(filepath.Join(dir, daeDir, "enc.json"), []byte(`{"res":16}`), 0o644) }, "dae/enc.json", nil, "SHA-256"},
		{"encoder unlisted", editManifest(func(m map[string]any) { delete(m["files"].(map[string]any), "dae/enc.json") }), daeDir, nil, "no encoder files"},
		{"escaping name", editManifest(func(m map[string]any) { m["files"].(map[string]any)["../x"] = "00" }), ManifestFile, nil, "leaves the directory"},
		{"wrong channels", editManifest(func(m map[string]any) { m["channels"] = 1 }), universalFile, nil, "dictionary shape"},
		{"more clusters", editManifest(func(m map[string]any) { m["clusters"] = 4 }), "dict-cluster-03.npy", nil, "not listed"},
		{"wrong filters", editManifest(func(m map[string]any) { m["filters"] = 64 }), universalFile, nil, "dictionary shape"},
		{"wrong pca", editManifest(func(m map[string]any) { m["pca_components"] = 128 }), pcaComponentsFile, nil, "PCA maps"},
		{"file unlisted", editManifest(func(m map[string]any) { delete(m["files"].(map[string]any), labelsFile) }), labelsFile, nil, "not listed"},
		{"sizes disagree", editManifest(func(m map[string]any) { m["cluster_sizes"] = []int{1, 2, 42} }), labelsFile, nil, "cluster sizes"},
	}
	for _, tc := range tests {
		dir := copyDir(t)
		tc.breakf(dir)
		_, err := Load(dir)
		var ae *ArtifactError
		if !errors.As(err, &ae) {
			t.Errorf("%s: err = %v, want *ArtifactError", tc.name, err)
			continue
		}
		if ae.File != tc.file || ae.Dir != dir {
			t.Errorf("%s: error names %q in %q, want %q in %q (%v)", tc.name, ae.File, ae.Dir, tc.file, dir, err)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: err = %v, want errors.Is %v", tc.name, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %q, want it to say %q", tc.name, err, tc.text)
		}
	}
	if _, err := Load(filepath.Join(base, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: err = %v, want fs.ErrNotExist", err)
	}
}

func TestSaveRefuses(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(d *Defense)
		wants string
	}{
		{"plain encoder", func(d *Defense) { d.Encoder = &meanEncoder{res: 32} }, "cannot be saved"},
		{"dictionary count", func(d *Defense) { d.Dictionaries = d.Dictionaries[:2] }, "2 cluster dictionaries for 3 clusters"},
		{"dictionary shape", func(d *Defense) { d.Universal = testDictionary(3, 3, 4, 0) }, "dictionary shape"},
		{"labels", func(d *Defense) { d.Labels = d.Labels[:5] }, "training codes shape"},
		{"knn", func(d *Defense) { d.Manifest.KNN = 0 }, "kNN vote"},
		{"lambda", func(d *Defense) { d.Manifest.Lambda = 0 }, "lambda"},
	}
	for _, tc := range tests {
		d := testDefense(t)
		tc.edit(d)
		dir := filepath.Join(t.TempDir(), "x")
		err := Save(dir, d)
		if err == nil || !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wants)
		}
		if _, serr := os.Stat(filepath.Join(dir, ManifestFile)); serr == nil {
			t.Errorf("%s: a manifest was written", tc.name)
		}
	}
}

func ExampleLoad() {
	_, err := Load(os.TempDir())
	var ae *ArtifactError
	fmt.Println(errors.As(err, &ae), errors.Is(err, ErrNotDefense))
	// Output: true true
}

// FuzzReadManifest checks that no manifest, however malformed, makes
// ReadManifest or Load panic, and that an accepted manifest names its format.
func FuzzReadManifest(f *testing.F) {
	f.Add([]byte(`{"format":"stl-defense","version":1,"clusters":2,"files":{"dae/x":"00"}}`))
	f.Add([]byte(`{"format":"stl-defense","version":1,"clusters":-5,"files":{"../../etc/passwd":"00"}}`))
	f.Add([]byte(`{"format":"stl-defense","version":1,"clusters":100000000}`))
	f.Add([]byte(`not json`))
	dir := f.TempDir()
	// In memory: the decoder and the listing checks Load runs before it
	// reads any other file (TestLoadRejects covers the files themselves).
	f.Fuzz(func(t *testing.T, manifest []byte) {
		m, err := decodeManifest("d", manifest)
		if err != nil {
			return
		}
		if m.Format != ArtifactFormat || m.Version != ArtifactVersion {
			t.Fatalf("accepted format %q version %d", m.Format, m.Version)
		}
		listed, err := m.listedFiles("d")
		if err != nil {
			return
		}
		if m.Clusters < 1 || m.Clusters > len(listed) {
			t.Fatalf("accepted %d clusters with %d files", m.Clusters, len(listed))
		}
		for _, name := range listed {
			if !filepath.IsLocal(name) {
				t.Fatalf("accepted file name %q", name)
			}
		}
		// Rare: a manifest that passes the listing checks goes to disk.
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil {
			t.Fatal("Load accepted a directory holding only a manifest")
		}
	})
}
