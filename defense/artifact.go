package defense

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Artifact format identification, written to and checked in manifest.json.
const (
	ArtifactFormat  = "stl-defense"
	ArtifactVersion = 1
	ManifestFile    = "manifest.json"
)

// File names inside a defense directory.
const (
	universalFile      = "dict-universal.npy"
	clusterDictPattern = "dict-cluster-%02d.npy"
	daeDir             = "dae"
	pcaMeanFile        = "pca-mean.npy"
	pcaComponentsFile  = "pca-components.npy"
	pcaVarianceFile    = "pca-variance.npy"
	centersFile        = "cluster-centers.npy"
	codesFile          = "train-codes.npy"
	labelsFile         = "train-clusters.npy"
)

// Manifest describes a saved defense: every hyperparameter it was built
// with, the software that built it, and the SHA-256 of every file, so that
// Load can refuse a partial or altered directory.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Resolution is the height and width of the images the defense was
	// built for (its dictionaries were learned at this size); Channels
	// their channel count.
	Resolution int `json:"resolution"`
	Channels   int `json:"channels"`
	// EncoderResolution is the side images are downsampled to before the
	// DAE (32 in the paper, section 5.1); EncoderFormat names the DAE's
	// file format (see RegisterEncoderFormat); LatentDim is its code width.
	EncoderResolution int    `json:"encoder_resolution"`
	EncoderFormat     string `json:"encoder_format"`
	LatentDim         int    `json:"latent_dim"`
	// PCAComponents is the code width after PCA.
	PCAComponents int `json:"pca_components"`
	// Clusters is the number of k-means clusters (and cluster dictionaries);
	// ClusterSizes their training image counts; KNN the number of voting
	// neighbours.
	Clusters     int   `json:"clusters"`
	ClusterSizes []int `json:"cluster_sizes"`
	KNN          int   `json:"knn"`
	// Filters, FilterSize and Lambda describe every dictionary: Filters
	// filters of FilterSize x FilterSize per channel, learned and applied
	// with sparsity weight Lambda (Problem (2)).
	Filters    int     `json:"filters"`
	FilterSize int     `json:"filter_size"`
	Lambda     float64 `json:"lambda"`
	// TrainImages is the number of images the defense was trained on, Seed
	// the master seed; Training holds the complete training options.
	TrainImages int             `json:"train_images"`
	Seed        uint64          `json:"seed"`
	Training    json.RawMessage `json:"training,omitempty"`
	// Apply is how the defense's transforms map their output and assign
	// clusters (omitted when zero: clip to [0, 1], kNN vote).
	Apply ApplyOptions `json:"apply,omitzero"`
	// Software records the builder: Go version, module version, OS/arch.
	Software map[string]string `json:"software,omitempty"`
	Created  time.Time         `json:"created"`
	// Files maps each file of the directory to its SHA-256 (hex).
	Files map[string]string `json:"files"`
}

// Defense is a trained stratified STL defense: the parts of Figure 2.
type Defense struct {
	Manifest Manifest
	// Universal is the dictionary learned on all training images and
	// Dictionaries the per-cluster ones (saved in SPORCO's (R, S, C, M)
	// .npy layout).
	Universal    *csc.Dictionary
	Dictionaries []*csc.Dictionary
	// Encoder is the DAE's encoder. To be saved it must be a SavableEncoder.
	Encoder Encoder
	// PCA reduces the latent codes; Centers are the k-means centres in the
	// reduced space, (Clusters, PCAComponents).
	PCA     *cluster.PCA
	Centers *tensor.Tensor
	// Codes are the PCA-reduced training codes, (TrainImages,
	// PCAComponents), and Labels their k-means clusters: the kNN vote's
	// reference set.
	Codes  *tensor.Tensor
	Labels []int
}

// SavableEncoder is an Encoder that can write itself in a registered format.
type SavableEncoder interface {
	Encoder
	// EncoderFormat names the format, as registered with RegisterEncoderFormat.
	EncoderFormat() string
	// SaveDir writes the encoder (the whole DAE may be written) into dir,
	// creating it if needed, each file atomically.
	SaveDir(dir string) error
}

// EncoderDecoder reads an encoder written by SavableEncoder.SaveDir.
type EncoderDecoder func(dir string) (Encoder, error)

var (
	formatsMu sync.RWMutex
	formats   = map[string]EncoderDecoder{}
)

// RegisterEncoderFormat makes Load able to read encoders saved under name.
// It is meant to be called from init functions; registering a name twice
// replaces the decoder.
func RegisterEncoderFormat(name string, dec EncoderDecoder) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	formats[name] = dec
}

// ErrNotDefense is returned (wrapped in an *ArtifactError) by Load for a
// directory without a manifest.json: not a defense, or one whose saving
// never finished (the manifest is written last).
var ErrNotDefense = errors.New("not a saved defense (no manifest.json; training unfinished?)")

// ArtifactError reports a defense directory that cannot be used: missing,
// partial or altered files, or parts that disagree with the manifest.
type ArtifactError struct {
	Dir, File string // File is empty when the error concerns the whole directory
	Reason    string
	Err       error // underlying error, may be nil
}

func (e *ArtifactError) Error() string {
	where := e.Dir
	if e.File != "" {
		where = filepath.Join(e.Dir, e.File)
	}
	msg := "defense " + where + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ArtifactError) Unwrap() error { return e.Err }

// ImageSpecError reports images that do not fit a defense: another
// resolution or channel count than the one it was built for.
type ImageSpecError struct {
	WantC, WantH, WantW int
	GotC, GotH, GotW    int
}

func (e *ImageSpecError) Error() string {
	return fmt.Sprintf("defense built for %dx%dx%d images (CxHxW), got %dx%dx%d", e.WantC, e.WantH, e.WantW, e.GotC, e.GotH, e.GotW)
}

// Validate checks that the parts of d agree with each other and with its
// manifest. Save and Load call it; errors are *ArtifactError with the file
// concerned.
func (d *Defense) Validate() error {
	m := &d.Manifest
	bad := func(file, format string, a ...any) error {
		return &ArtifactError{File: file, Reason: fmt.Sprintf(format, a...)}
	}
	switch {
	case m.Resolution < 1 || m.Channels < 1 || m.EncoderResolution < 1:
		return bad(ManifestFile, "resolution %d, channels %d, encoder resolution %d: want all >= 1", m.Resolution, m.Channels, m.EncoderResolution)
	case m.Clusters < 1:
		return bad(ManifestFile, "%d clusters, want >= 1", m.Clusters)
	case m.Filters < 1 || m.FilterSize < 1:
		return bad(ManifestFile, "%d filters of size %d, want >= 1", m.Filters, m.FilterSize)
	case !(m.Lambda > 0):
		return bad(ManifestFile, "lambda %g, want > 0", m.Lambda)
	}
	if err := m.Apply.Validate(); err != nil {
		return &ArtifactError{File: ManifestFile, Reason: "bad apply options", Err: err}
	}
	checkDict := func(file string, d *csc.Dictionary) error {
		if d == nil {
			return bad(file, "missing dictionary")
		}
		if err := checkDictionary(d, m.Filters, m.Channels, m.FilterSize); err != nil {
			return &ArtifactError{File: file, Reason: "bad dictionary", Err: err}
		}
		return nil
	}
	if err := checkDict(universalFile, d.Universal); err != nil {
		return err
	}
	if len(d.Dictionaries) != m.Clusters {
		return bad(ManifestFile, "%d cluster dictionaries for %d clusters", len(d.Dictionaries), m.Clusters)
	}
	for k, t := range d.Dictionaries {
		if err := checkDict(fmt.Sprintf(clusterDictPattern, k), t); err != nil {
			return err
		}
	}
	if d.Encoder == nil {
		return bad(daeDir, "missing encoder")
	}
	if err := d.PCA.Validate(); err != nil {
		return &ArtifactError{File: pcaComponentsFile, Reason: "bad PCA", Err: err}
	}
	if d.PCA.In() != m.LatentDim || d.PCA.Out() != m.PCAComponents {
		return bad(pcaComponentsFile, "PCA maps %d -> %d dimensions, manifest says %d -> %d", d.PCA.In(), d.PCA.Out(), m.LatentDim, m.PCAComponents)
	}
	if d.Centers == nil || !slices.Equal(d.Centers.Shape, []int{m.Clusters, m.PCAComponents}) {
		var got []int
		if d.Centers != nil {
			got = d.Centers.Shape
		}
		return bad(centersFile, "centres shape %v, want [%d %d]", got, m.Clusters, m.PCAComponents)
	}
	if err := d.Centers.Validate(); err != nil {
		return &ArtifactError{File: centersFile, Reason: "bad centres", Err: err}
	}
	if d.Codes == nil || len(d.Codes.Shape) != 2 || d.Codes.Shape[1] != m.PCAComponents || d.Codes.Shape[0] != len(d.Labels) {
		var got []int
		if d.Codes != nil {
			got = d.Codes.Shape
		}
		return bad(codesFile, "training codes shape %v, want [%d %d]", got, len(d.Labels), m.PCAComponents)
	}
	if err := d.Codes.Validate(); err != nil {
		return &ArtifactError{File: codesFile, Reason: "bad training codes", Err: err}
	}
	if m.KNN < 1 || m.KNN > len(d.Labels) {
		return bad(ManifestFile, "kNN vote of %d neighbours over %d training codes", m.KNN, len(d.Labels))
	}
	sizes := make([]int, m.Clusters)
	for i, l := range d.Labels {
		if l < 0 || l >= m.Clusters {
			return bad(labelsFile, "training code %d in cluster %d, want [0, %d)", i, l, m.Clusters)
		}
		sizes[l]++
	}
	if m.ClusterSizes != nil && !slices.Equal(sizes, m.ClusterSizes) {
		return bad(labelsFile, "cluster sizes %v, manifest says %v", sizes, m.ClusterSizes)
	}
	return nil
}

// DictionaryError reports a dictionary of other dimensions than a defense
// wants.
type DictionaryError struct {
	Want, Got [4]int // filters M, channels C, rows R, columns S
}

func (e *DictionaryError) Error() string {
	return fmt.Sprintf("dictionary shape (M, C, R, S) = %v, want %v", e.Got, e.Want)
}

// checkDictionary returns a *DictionaryError unless d has m filters of c
// channels and size x size pixels, and an error for a nil d or d's own
// error (non-finite values, inconsistent length) when it is invalid.
func checkDictionary(d *csc.Dictionary, m, c, size int) error {
	if d == nil {
		return errors.New("missing dictionary")
	}
	if want, got := [4]int{m, c, size, size}, [4]int{d.M, d.C, d.R, d.S}; got != want {
		return &DictionaryError{Want: want, Got: got}
	}
	return d.Validate()
}

// CheckImages returns an *ImageSpecError unless x is an (N, C, H, W) batch
// with the defense's channel count and resolution.
func (d *Defense) CheckImages(x *tensor.Tensor) error {
	_, c, h, w, err := x.NCHW()
	if err != nil {
		return err
	}
	m := &d.Manifest
	if c != m.Channels || h != m.Resolution || w != m.Resolution {
		return &ImageSpecError{WantC: m.Channels, WantH: m.Resolution, WantW: m.Resolution, GotC: c, GotH: h, GotW: w}
	}
	return nil
}

// Stratifier returns the model that routes images to clusters: by the kNN
// vote, or transductively from the k-means centres when the manifest's
// Apply.Assign says so.
func (d *Defense) Stratifier() (*Stratifier, error) {
	s, err := NewStratifier(d.Encoder, d.Manifest.EncoderResolution, d.Manifest.Channels, d.PCA, d.Codes, d.Labels, d.Manifest.Clusters, cluster.KNNOptions{K: d.Manifest.KNN})
	if err != nil || !d.Manifest.Apply.transductive() {
		return s, err
	}
	return s.Transductive(d.Centers)
}

// software describes the running build for the manifest.
func software() map[string]string {
	s := map[string]string{"go": runtime.Version(), "os_arch": runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		s["module"] = bi.Main.Path + "@" + bi.Main.Version
		for _, kv := range bi.Settings {
			if kv.Key == "-tags" || kv.Key == "vcs.revision" {
				s[kv.Key] = kv.Value
			}
		}
	}
	return s
}

// Save writes d to dir, creating it if needed. Every file is written
// atomically (temporary file and rename) and manifest.json, which lists the
// SHA-256 of every other file, is written last: a directory without it is
// not a defense. Save fills in d.Manifest's Format, Version, Files, Created
// (when zero) and Software (when nil). d.Encoder must be a SavableEncoder.
func Save(dir string, d *Defense) error {
	enc, ok := d.Encoder.(SavableEncoder)
	if !ok {
		return &ArtifactError{Dir: dir, File: daeDir, Reason: fmt.Sprintf("encoder %T cannot be saved (not a SavableEncoder)", d.Encoder)}
	}
	d.Manifest.EncoderFormat = enc.EncoderFormat()
	if err := d.Validate(); err != nil {
		var ae *ArtifactError
		if errors.As(err, &ae) {
			ae.Dir = dir
		}
		return err
	}
	files := map[string]string{}
	put := func(name string, fill func(io.Writer) error) error {
		h := sha256.New()
		err := safefile.Write(filepath.Join(dir, name), func(w io.Writer) error {
			return fill(io.MultiWriter(w, h))
		})
		if err != nil {
			return &ArtifactError{Dir: dir, File: name, Reason: "write", Err: err}
		}
		files[name] = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	tens := func(name string, t *tensor.Tensor) error {
		return put(name, func(w io.Writer) error { return npy.Write(w, t) })
	}
	dict := func(name string, d *csc.Dictionary) error {
		return put(name, func(w io.Writer) error { return csc.EncodeDictionary(w, d) })
	}
	if err := dict(universalFile, d.Universal); err != nil {
		return err
	}
	for k, cd := range d.Dictionaries {
		if err := dict(fmt.Sprintf(clusterDictPattern, k), cd); err != nil {
			return err
		}
	}
	if err := enc.SaveDir(filepath.Join(dir, daeDir)); err != nil {
		return &ArtifactError{Dir: dir, File: daeDir, Reason: "write encoder", Err: err}
	}
	ents, err := os.ReadDir(filepath.Join(dir, daeDir))
	if err != nil {
		return &ArtifactError{Dir: dir, File: daeDir, Reason: "list encoder files", Err: err}
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name := daeDir + "/" + e.Name()
		b, err := os.ReadFile(filepath.Join(dir, daeDir, e.Name()))
		if err != nil {
			return &ArtifactError{Dir: dir, File: name, Reason: "read back", Err: err}
		}
		h := sha256.Sum256(b)
		files[name] = hex.EncodeToString(h[:])
	}
	mean, _ := tensor.FromData(d.PCA.Mean, len(d.PCA.Mean))
	variance := tensor.New(d.PCA.Out())
	for i, v := range d.PCA.Variance {
		variance.Data[i] = float32(v)
	}
	for _, f := range []struct {
		name string
		t    *tensor.Tensor
	}{{pcaMeanFile, mean}, {pcaComponentsFile, d.PCA.Components}, {pcaVarianceFile, variance}, {centersFile, d.Centers}, {codesFile, d.Codes}} {
		if err := tens(f.name, f.t); err != nil {
			return err
		}
	}
	if err := put(labelsFile, func(w io.Writer) error { return npy.WriteInts(w, d.Labels) }); err != nil {
		return err
	}
	m := &d.Manifest
	m.Format, m.Version, m.Files = ArtifactFormat, ArtifactVersion, files
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	if m.Software == nil {
		m.Software = software()
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return &ArtifactError{Dir: dir, File: ManifestFile, Reason: "encode", Err: err}
	}
	if err := safefile.WriteBytes(filepath.Join(dir, ManifestFile), append(js, '\n')); err != nil {
		return &ArtifactError{Dir: dir, File: ManifestFile, Reason: "write", Err: err}
	}
	return nil
}

// ReadManifest reads and checks the manifest of the defense in dir without
// loading the rest.
func ReadManifest(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, &ArtifactError{Dir: dir, Reason: "cannot open", Err: serr}
		}
		return nil, &ArtifactError{Dir: dir, Reason: "cannot load", Err: ErrNotDefense}
	}
	if err != nil {
		return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: "read", Err: err}
	}
	return decodeManifest(dir, raw)
}

// decodeManifest decodes and checks the manifest raw read from dir (named
// in errors only).
func decodeManifest(dir string, raw []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: "malformed JSON", Err: err}
	}
	if m.Format != ArtifactFormat {
		return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: fmt.Sprintf("format %q, want %q", m.Format, ArtifactFormat)}
	}
	if m.Version != ArtifactVersion {
		return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: fmt.Sprintf("format version %d, this build reads version %d", m.Version, ArtifactVersion)}
	}
	return &m, nil
}

// listedFiles checks that the manifest m of dir lists every file a defense
// of m.Clusters clusters needs, encoder files among them, and only names
// inside the directory, and returns the names it lists, sorted.
func (m *Manifest) listedFiles(dir string) ([]string, error) {
	if m.Clusters < 1 || m.Clusters > len(m.Files) {
		return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: fmt.Sprintf("%d clusters with %d files listed", m.Clusters, len(m.Files))}
	}
	need := []string{universalFile, pcaMeanFile, pcaComponentsFile, pcaVarianceFile, centersFile, codesFile, labelsFile}
	for k := 0; k < m.Clusters; k++ {
		need = append(need, fmt.Sprintf(clusterDictPattern, k))
	}
	for _, name := range need {
		if _, ok := m.Files[name]; !ok {
			return nil, &ArtifactError{Dir: dir, File: name, Reason: "not listed in manifest.json"}
		}
	}
	hasDAE := false
	listed := make([]string, 0, len(m.Files))
	for name := range m.Files {
		if !filepath.IsLocal(name) {
			return nil, &ArtifactError{Dir: dir, File: ManifestFile, Reason: fmt.Sprintf("file name %q leaves the directory", name)}
		}
		hasDAE = hasDAE || strings.HasPrefix(name, daeDir+"/")
		listed = append(listed, name)
	}
	if !hasDAE {
		return nil, &ArtifactError{Dir: dir, File: daeDir, Reason: "no encoder files listed in manifest.json"}
	}
	sort.Strings(listed)
	return listed, nil
}

// Load reads the defense saved in dir by Save. It checks that every file
// the manifest lists is present with the recorded SHA-256, that the
// encoder's format is registered, and that all parts agree (Validate).
// Errors are *ArtifactError naming the file; a directory without a
// manifest gives one wrapping ErrNotDefense.
func Load(dir string) (*Defense, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	listed, err := m.listedFiles(dir)
	if err != nil {
		return nil, err
	}
	blobs := map[string][]byte{}
	for _, name := range listed {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, &ArtifactError{Dir: dir, File: name, Reason: "missing or unreadable", Err: err}
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != m.Files[name] {
			return nil, &ArtifactError{Dir: dir, File: name, Reason: "content does not match the SHA-256 in manifest.json (partial or altered file)"}
		}
		if !strings.HasPrefix(name, daeDir+"/") {
			blobs[name] = b
		}
	}
	tens := func(name string) (*tensor.Tensor, error) {
		t, err := npy.Read(bytes.NewReader(blobs[name]))
		if err != nil {
			return nil, &ArtifactError{Dir: dir, File: name, Reason: "decode", Err: err}
		}
		return t, nil
	}
	dict := func(name string) (*csc.Dictionary, error) {
		cd, err := csc.DecodeDictionary(bytes.NewReader(blobs[name]))
		if err != nil {
			return nil, &ArtifactError{Dir: dir, File: name, Reason: "decode", Err: err}
		}
		return cd, nil
	}
	d := &Defense{Manifest: *m}
	if d.Universal, err = dict(universalFile); err != nil {
		return nil, err
	}
	for k := 0; k < m.Clusters; k++ {
		cd, err := dict(fmt.Sprintf(clusterDictPattern, k))
		if err != nil {
			return nil, err
		}
		d.Dictionaries = append(d.Dictionaries, cd)
	}
	formatsMu.RLock()
	dec, ok := formats[m.EncoderFormat]
	formatsMu.RUnlock()
	if !ok {
		return nil, &ArtifactError{Dir: dir, File: daeDir, Reason: fmt.Sprintf("unknown encoder format %q", m.EncoderFormat)}
	}
	if d.Encoder, err = dec(filepath.Join(dir, daeDir)); err != nil {
		return nil, &ArtifactError{Dir: dir, File: daeDir, Reason: "decode", Err: err}
	}
	mean, err := tens(pcaMeanFile)
	if err != nil {
		return nil, err
	}
	comps, err := tens(pcaComponentsFile)
	if err != nil {
		return nil, err
	}
	variance, err := tens(pcaVarianceFile)
	if err != nil {
		return nil, err
	}
	d.PCA = &cluster.PCA{Mean: mean.Data, Components: comps, Variance: make([]float64, len(variance.Data))}
	for i, v := range variance.Data {
		d.PCA.Variance[i] = float64(v)
	}
	if d.Centers, err = tens(centersFile); err != nil {
		return nil, err
	}
	if d.Codes, err = tens(codesFile); err != nil {
		return nil, err
	}
	if d.Labels, err = npy.ReadInts(bytes.NewReader(blobs[labelsFile])); err != nil {
		return nil, &ArtifactError{Dir: dir, File: labelsFile, Reason: "decode", Err: err}
	}
	if err := d.Validate(); err != nil {
		var ae *ArtifactError
		if errors.As(err, &ae) {
			ae.Dir = dir
		}
		return nil, err
	}
	return d, nil
}
