package dataset

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ImageNet's validation labels: the images of ILSVRC2012's val/ lie in one
// folder, labelled by a file beside it in one of two forms.
const (
	// ImageNetValSolution is the Kaggle challenge's label file: a header,
	// then "ImageId,PredictionString" rows whose PredictionString starts
	// with the image's WNID ("ILSVRC2012_val_00000001,n01751748 43 0 ...").
	ImageNetValSolution = "LOC_val_solution.csv"
	// ImageNetValGroundTruth is the devkit's label file
	// (ILSVRC2012_devkit_t12/data/): line i holds the ILSVRC2012_ID (1 to
	// 1000) of ILSVRC2012_val_<i, 8 digits>.JPEG.
	ImageNetValGroundTruth = "ILSVRC2012_validation_ground_truth.txt"
	// ImageNetDevkitSynsets maps the devkit's ILSVRC2012_IDs to WNIDs: line
	// k holds (as its first word) the WNID whose ILSVRC2012_ID is k, the
	// order of the 1,000 leaf synsets of the devkit's data/meta.mat. It is
	// not in the devkit as text (meta.mat is MATLAB): the user writes it
	// once. Kaggle's LOC_synset_mapping.txt is sorted by WNID, a different
	// order, and is refused.
	ImageNetDevkitSynsets = "ILSVRC2012_synsets.txt"
)

// valFileID matches the devkit's validation file names.
var valFileID = regexp.MustCompile(`^ILSVRC2012_val_(\d{8})\.`)

// flatImageDir reports whether dir holds image files and no subfolders
// (hidden entries aside): ImageNet's validation layout rather than
// <class>/ subfolders.
func flatImageDir(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	images := false
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() {
			return false
		}
		images = images || imageExt(e.Name())
	}
	return images
}

// imageNetLabelDirs are where the label files of root/val are looked for,
// in order: val/ itself, root, the devkit's data folder in root, and the
// three folders above root (the Kaggle archive keeps LOC_val_solution.csv
// three levels above ILSVRC/Data/CLS-LOC).
func imageNetLabelDirs(root, valDir string) []string {
	dirs := []string{valDir, root, filepath.Join(root, "ILSVRC2012_devkit_t12", "data")}
	up := root
	for range 3 {
		abs, err := filepath.Abs(up)
		if err != nil || filepath.Dir(abs) == abs {
			break
		}
		up = filepath.Dir(abs)
		dirs = append(dirs, up)
	}
	return dirs
}

// findFile returns the first dirs/name that exists, or "".
func findFile(dirs []string, name string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// ReadImageNetVal reads ImageNet's validation layout: every image of
// valDir in one folder, labelled by LOC_val_solution.csv or by the devkit's
// ground truth with ILSVRC2012_synsets.txt (see the constants), looked for
// in valDir, root (the folder holding train/), root's
// ILSVRC2012_devkit_t12/data/ and the three folders above root; the CSV is
// taken when both are present. Labels are indices into classes (the WNIDs
// of the training class folders, in their order), so that the same class
// has the same index in both parts. Images are decoded, converted and
// resized as ReadImageFolder does with opts, then sorted by (class, file).
// An image without a label, a WNID not among classes, a label file that is
// malformed or missing are *FormatErrors (ErrLabel, ErrUnknownFormat,
// ErrEmpty) naming the file and the image.
func ReadImageNetVal(ctx context.Context, root, valDir string, classes []string, opts FolderOptions) (*Set, error) {
	folder, err := openImageNetVal(root, valDir, classes, opts)
	if err != nil {
		return nil, err
	}
	return folder.Read(ctx, 0, folder.Len())
}

// openImageNetVal lists and labels the images ReadImageNetVal reads,
// decoding none.
func openImageNetVal(root, valDir string, classes []string, opts FolderOptions) (*ImageFolder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(valDir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		if !imageExt(e.Name()) {
			return nil, formatErr(filepath.Join(valDir, e.Name()), -1, ErrNotImage, "not a .png, .jpg or .jpeg file")
		}
		files = append(files, e.Name())
	}
	if len(files) == 0 {
		return nil, formatErr(valDir, -1, ErrEmpty, "no images")
	}
	dirs := imageNetLabelDirs(root, valDir)
	var wnid func(file string) (string, error)
	if p := findFile(dirs, ImageNetValSolution); p != "" {
		if wnid, err = readValSolution(p); err != nil {
			return nil, err
		}
	} else if p := findFile(dirs, ImageNetValGroundTruth); p != "" {
		syn := findFile(dirs, ImageNetDevkitSynsets)
		if syn == "" {
			return nil, formatErr(p, -1, ErrEmpty, "the devkit's ground truth needs %s beside it (the WNID of each ILSVRC2012_ID, in the order of the devkit's meta.mat)", ImageNetDevkitSynsets)
		}
		if wnid, err = readDevkitLabels(p, syn); err != nil {
			return nil, err
		}
	} else {
		return nil, formatErr(valDir, -1, ErrEmpty, "validation images in one folder need %s, or %s with %s, in %s",
			ImageNetValSolution, ImageNetValGroundTruth, ImageNetDevkitSynsets, strings.Join(dirs, ", "))
	}
	known := map[string]bool{}
	for _, c := range classes {
		known[c] = true
	}
	o := opts
	o.Classes = classes
	recs := make([]folderRec, len(files))
	for i, f := range files {
		p := filepath.Join(valDir, f)
		w, err := wnid(f)
		if err != nil {
			return nil, formatErr(p, i, ErrLabel, "%v", err)
		}
		if !known[w] {
			return nil, formatErr(p, i, ErrLabel, "labelled %s, which is not one of the %d training class folders", w, len(classes))
		}
		recs[i] = folderRec{class: w, file: p}
	}
	// Listed and labelled first, then decoded in the set's order straight
	// into it.
	return listedFolder(valDir, o, recs)
}

// readValSolution reads LOC_val_solution.csv into a lookup by file name
// (the part before the first dot).
func readValSolution(path string) (func(string) (string, error), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	labels := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 && strings.HasPrefix(text, "ImageId") || text == "" {
			continue
		}
		id, pred, ok := strings.Cut(text, ",")
		fields := strings.Fields(pred)
		if !ok || id == "" || len(fields) == 0 || !isWNID(fields[0]) {
			return nil, formatErr(path, line, ErrUnknownFormat, "want ImageId,WNID ..., got %q", text)
		}
		if prev, dup := labels[id]; dup && prev != fields[0] {
			return nil, formatErr(path, line, ErrLabel, "image %s labelled both %s and %s", id, prev, fields[0])
		}
		labels[id] = fields[0]
	}
	if err := sc.Err(); err != nil {
		return nil, formatErr(path, line, err, "read")
	}
	return func(file string) (string, error) {
		id, _, _ := strings.Cut(file, ".")
		if w, ok := labels[id]; ok {
			return w, nil
		}
		return "", fmt.Errorf("no label for %s in %s", id, path)
	}, nil
}

// readDevkitLabels reads the devkit's ground truth (an ILSVRC2012_ID per
// validation image, in file-number order) and the synset list mapping
// those IDs to WNIDs into a lookup by file name.
func readDevkitLabels(truth, synsets string) (func(string) (string, error), error) {
	wnids, err := readLines(synsets, func(line int, text string) (string, error) {
		w, _, _ := strings.Cut(text, " ")
		if !isWNID(w) {
			return "", formatErr(synsets, line, ErrUnknownFormat, "want a WNID (n + 8 digits) first, got %q", text)
		}
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	if len(wnids) > 1 && slices.IsSorted(wnids) {
		return nil, formatErr(synsets, -1, ErrUnknownFormat,
			"its %d WNIDs are sorted, as LOC_synset_mapping.txt is: the devkit's ILSVRC2012_ID order (meta.mat) is not sorted, and the labels would be wrong", len(wnids))
	}
	ids, err := readLines(truth, func(line int, text string) (int, error) {
		id, err := strconv.Atoi(text)
		if err != nil || id < 1 || id > len(wnids) {
			return 0, formatErr(truth, line, ErrLabel, "want an ILSVRC2012_ID in 1..%d (the lines of %s), got %q", len(wnids), filepath.Base(synsets), text)
		}
		return id, nil
	})
	if err != nil {
		return nil, err
	}
	return func(file string) (string, error) {
		m := valFileID.FindStringSubmatch(file)
		if m == nil {
			return "", fmt.Errorf("%s is not named ILSVRC2012_val_<8 digits>, so %s cannot label it", file, filepath.Base(truth))
		}
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > len(ids) {
			return "", fmt.Errorf("no label for image %d: %s has %d lines", n, truth, len(ids))
		}
		return wnids[ids[n-1]-1], nil
	}, nil
}

// readLines parses each non-empty line (trimmed; 1-based line numbers for
// errors) of a text file with parse.
func readLines[T any](path string, parse func(line int, text string) (T, error)) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		v, err := parse(line, text)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, formatErr(path, line, err, "read")
	}
	if len(out) == 0 {
		return nil, formatErr(path, -1, ErrEmpty, "no lines")
	}
	return out, nil
}

// isWNID reports whether s is a WordNet ID as ImageNet names classes:
// "n" and 8 digits.
func isWNID(s string) bool {
	if len(s) != 9 || s[0] != 'n' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
