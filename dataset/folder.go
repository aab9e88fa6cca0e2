package dataset

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	_ "image/jpeg" // register the JPEG decoder for image.Decode
	_ "image/png"  // register the PNG decoder for image.Decode
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// FolderOptions tune ReadImageFolder.
type FolderOptions struct {
	// Size is the side of the square images produced: each image is
	// center-cropped to a square and resized by area averaging. 0 keeps
	// every image at its own size, which must then agree (else ErrShape).
	Size int
	// Classes fixes the class names and their order (label i = Classes[i]);
	// a folder not listed is an error. nil: the sorted names of the class
	// folders.
	Classes []string
	// Progress receives one report per decoded image; nil for none.
	Progress progress.Reporter
}

// DefaultFolderOptions returns Size 0 (images keep their own size, which
// must agree; set 64 or 128 for the paper's ImageNet-10 resolutions) and
// classes from the folder names.
func DefaultFolderOptions() FolderOptions { return FolderOptions{} }

// Validate returns an *OptionError for a Size outside 0..4096.
func (o FolderOptions) Validate() error {
	if o.Size < 0 || o.Size > 4096 {
		return option.New("dataset", "FolderOptions.Size", o.Size, "want 0..4096")
	}
	return nil
}

// archiveImage reports whether the tar entry hdr is an image file (not
// hidden) of an archive laid out as .../<split>/<class>/<file> with split
// train, val or test, and returns its split and class.
func archiveImage(hdr *tar.Header) (split, class string, ok bool) {
	if hdr.Typeflag != tar.TypeReg || !imageExt(hdr.Name) || strings.HasPrefix(path.Base(hdr.Name), ".") {
		return "", "", false
	}
	parts := strings.Split(path.Clean(hdr.Name), "/")
	if len(parts) < 3 {
		return "", "", false
	}
	split, class = parts[len(parts)-3], parts[len(parts)-2]
	return split, class, split == "train" || split == "val" || split == "test"
}

// imageExt reports whether name has an image extension this package reads.
func imageExt(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// folderBuilder accumulates decoded images of one split, keyed by class
// name, and sorts them into a Set at the end.
type folderBuilder struct {
	name  string
	opts  FolderOptions
	shape Shape // fixed after the first image when Size == 0
	data  []float32
	recs  []folderRec
	hint  int // the number of images to be added, when known (0: not)

	resizer *Resizer
}

type folderRec struct{ class, file string }

// Limits on one image file, checked before decoding so that a hostile
// header cannot make the decoder allocate gigabytes.
var (
	maxImageBytes  int64 = 1 << 28 // 256 MiB of encoded data
	maxImagePixels       = 1 << 26 // 64 Mpixel, e.g. 8192x8192
)

// decodeImage reads one PNG or JPEG, checking its header against the
// limits before decoding. index is the image's position, for errors.
func decodeImage(r io.Reader, file string, index int) (image.Image, error) {
	buf, err := io.ReadAll(io.LimitReader(r, maxImageBytes+1))
	if err != nil {
		return nil, formatErr(file, index, err, "read")
	}
	if int64(len(buf)) > maxImageBytes {
		return nil, formatErr(file, index, ErrNotImage, "file larger than %d bytes", maxImageBytes)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		return nil, formatErr(file, index, ErrNotImage, "%v", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImagePixels/max(cfg.Height, 1) {
		return nil, formatErr(file, index, ErrNotImage, "image is %dx%d, limit %d pixels", cfg.Width, cfg.Height, maxImagePixels)
	}
	img, _, err := image.Decode(bytes.NewReader(buf))
	if err != nil {
		return nil, formatErr(file, index, ErrNotImage, "%v", err)
	}
	return img, nil
}

func (b *folderBuilder) add(r io.Reader, file, class string) error {
	img, err := decodeImage(r, file, len(b.recs))
	if err != nil {
		return err
	}
	sh := Shape{3, b.opts.Size, b.opts.Size}
	if b.opts.Size == 0 {
		bd := img.Bounds()
		sh = Shape{3, bd.Dy(), bd.Dx()}
		if !sh.valid() {
			return formatErr(file, len(b.recs), ErrShape, "image is %dx%d", bd.Dx(), bd.Dy())
		}
	}
	if len(b.recs) == 0 {
		b.shape = sh
	} else if sh != b.shape {
		return formatErr(file, len(b.recs), ErrShape, "image is %dx%d, earlier images %dx%d (choose a size to resize them all)", sh.W, sh.H, b.shape.W, b.shape.H)
	}
	p := sh.Pixels()
	n := len(b.data)
	if cap(b.data) < n+p {
		c := 2*cap(b.data) + 16*p
		if n == 0 && b.hint > 0 {
			c = b.hint * p // the number of images is known
		}
		grown := make([]float32, n, c)
		copy(grown, b.data)
		b.data = grown
	}
	b.data = b.data[:n+p]
	if b.resizer == nil {
		b.resizer = NewResizer(b.opts.Size)
	}
	if err := b.resizer.Convert(b.data[n:], img); err != nil {
		return formatErr(file, len(b.recs), ErrShape, "%v", err)
	}
	b.recs = append(b.recs, folderRec{class, file})
	return nil
}

// addFile decodes the image file at path into b as an image of class.
func (b *folderBuilder) addFile(path, class string) error {
	f, err := os.Open(path)
	if err != nil {
		return formatErr(path, len(b.recs), err, "open")
	}
	defer f.Close()
	return b.add(f, path, class)
}

// order returns the order of b's images in their set, sorted by (class,
// file), each one's label and the classes.
func (b *folderBuilder) order() (order, labels []int, classes []string, err error) {
	if len(b.recs) == 0 {
		return nil, nil, nil, formatErr(b.name, -1, ErrEmpty, "no images in any class folder")
	}
	classes = b.opts.Classes
	if classes == nil {
		seen := map[string]bool{}
		for _, r := range b.recs {
			if !seen[r.class] {
				if err := CheckClassName(r.class); err != nil {
					return nil, nil, nil, formatErr(b.name, -1, err, "class folder")
				}
				seen[r.class] = true
				classes = append(classes, r.class)
			}
		}
		sort.Strings(classes)
	}
	label := map[string]int{}
	for i, c := range classes {
		label[c] = i
	}
	order = make([]int, len(b.recs))
	labels = make([]int, len(b.recs))
	for i := range order {
		order[i] = i
		l, ok := label[b.recs[i].class]
		if !ok {
			return nil, nil, nil, formatErr(b.recs[i].file, i, ErrLabel, "class folder %q is not one of the %d given classes", b.recs[i].class, len(classes))
		}
		labels[i] = l
	}
	sort.SliceStable(order, func(i, j int) bool {
		ri, rj := b.recs[order[i]], b.recs[order[j]]
		if ri.class != rj.class {
			return label[ri.class] < label[rj.class]
		}
		return ri.file < rj.file
	})
	return order, labels, classes, nil
}

// set sorts the decoded images by (class, file) and labels them.
func (b *folderBuilder) set() (*Set, error) {
	order, labels, classes, err := b.order()
	if err != nil {
		return nil, err
	}
	out := NewSet(b.name, len(order), b.shape, classes)
	p := b.shape.Pixels()
	for j, i := range order {
		copy(out.Images.Data[j*p:(j+1)*p], b.data[i*p:(i+1)*p])
		out.Labels[j] = labels[i]
	}
	return out, nil
}

// ReadImageFolder reads root/<class>/<image> into a Set, images sorted by
// class then file name. Every class folder must hold at least one image;
// every regular file not starting with "." must be a decodable .png, .jpg or
// .jpeg. Images are converted to RGB (alpha is composited over black, gray
// replicated) and resized as FolderOptions.Size says. The context is checked
// before each image. It is OpenImageFolder and Read of every image: the
// images are decoded in their final order straight into the set.
func ReadImageFolder(ctx context.Context, root string, opts FolderOptions) (*Set, error) {
	f, err := OpenImageFolder(root, opts)
	if err != nil {
		return nil, err
	}
	return f.Read(ctx, 0, f.Len())
}

// splitNames are the subfolder names taken as train and test parts.
var (
	trainSplits = []string{"train"}
	testSplits  = []string{"val", "test"}
)

// readFolderSplits reads root/train and root/val (or root/test) as image
// folders with shared classes; a val/ (or test/) holding its images
// directly, as ImageNet's, is labelled by ReadImageNetVal.
func readFolderSplits(ctx context.Context, root string, lo LoadOptions) (train, test *Set, err error) {
	tf, vf, names, err := openFolderSplits(root, lo)
	if err != nil {
		return nil, nil, err
	}
	if train, err = tf.Read(ctx, 0, tf.Len()); err != nil {
		return nil, nil, err
	}
	if test, err = vf.Read(ctx, 0, vf.Len()); err != nil {
		return nil, nil, err
	}
	base := filepath.Base(root)
	train.Name, test.Name = base+"/train", base+"/test"
	if names != nil {
		train.Classes, test.Classes = names, append([]string(nil), names...)
	}
	return train, test, nil
}

// openFolderSplits lists root/train and root/val (or root/test) as
// readFolderSplits reads them, decoding no image, and returns the class
// names of a classes.txt beside them (nil without one), which name the
// labels in place of the folders' names.
func openFolderSplits(root string, lo LoadOptions) (train, test *ImageFolder, names []string, err error) {
	opts := FolderOptions{Size: lo.Size, Progress: lo.Progress}
	// A classes.txt beside train/ (written by Save) fixes the label order;
	// class folders carry the names made safe for file systems.
	if _, err := os.Stat(filepath.Join(root, "classes.txt")); err == nil {
		if names, err = readClassFile(filepath.Join(root, "classes.txt")); err != nil {
			return nil, nil, nil, err
		}
		opts.Classes = classFolders(names)
	}
	if train, err = OpenImageFolder(filepath.Join(root, "train"), opts); err != nil {
		return nil, nil, nil, err
	}
	opts.Classes = train.Classes()
	for _, s := range testSplits {
		dir := filepath.Join(root, s)
		if st, e := os.Stat(dir); e != nil || !st.IsDir() {
			continue
		}
		if flatImageDir(dir) { // ImageNet's validation layout
			test, err = openImageNetVal(root, dir, train.Classes(), opts)
		} else {
			test, err = OpenImageFolder(dir, opts)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		break
	}
	if test == nil {
		return nil, nil, nil, formatErr(root, -1, ErrEmpty, "no val/ or test/ folder")
	}
	return train, test, names, nil
}

// ReadImageArchive reads an image-folder archive (.tar, or gzipped .tar.gz /
// .tgz, detected by content) in one pass: members
// <any prefix>/<split>/<class>/<image> with split "train", "val" or "test",
// as in imagenette2-160.tgz. Non-image members are skipped. It returns the
// train part and the val part (or test when there is no val); the test
// classes are the train classes. file names the archive in errors.
func ReadImageArchive(ctx context.Context, r io.Reader, file string, opts FolderOptions) (train, test *Set, err error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	zr, done, err := maybeGunzip(r, file)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	tr := tar.NewReader(zr)
	builders := map[string]*folderBuilder{}
	rep := progress.Or(opts.Progress)
	count := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, formatErr(file, -1, err, "tar")
		}
		split, class, ok := archiveImage(hdr)
		if !ok {
			continue
		}
		b := builders[split]
		if b == nil {
			o := opts
			o.Classes = nil
			b = &folderBuilder{name: file + ":" + split, opts: o}
			builders[split] = b
		}
		if err := b.add(tr, file+":"+hdr.Name, class); err != nil {
			return nil, nil, err
		}
		count++
		rep.Report("decode "+path.Base(file), count, 0, "")
	}
	tb := builders["train"]
	vb := builders["val"]
	if vb == nil {
		vb = builders["test"]
	}
	if tb == nil || vb == nil {
		return nil, nil, formatErr(file, -1, ErrEmpty, "archive holds no train/<class>/ and val/<class>/ (or test/) images")
	}
	tb.opts.Classes = opts.Classes
	if train, err = tb.set(); err != nil {
		return nil, nil, err
	}
	vb.opts.Classes = train.Classes
	if test, err = vb.set(); err != nil {
		return nil, nil, err
	}
	if train.Shape() != test.Shape() {
		return nil, nil, formatErr(file, -1, ErrShape, "train images %v, test images %v", train.Shape(), test.Shape())
	}
	base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".gz"), ".tar"), ".tgz")
	train.Name, test.Name = base+"/train", base+"/test"
	return train, test, nil
}

// loadArchive reads a CIFAR-10 binary archive or an image-folder archive,
// deciding by the first member that tells them apart.
func loadArchive(ctx context.Context, file string, lo LoadOptions) (train, test *Set, err error) {
	kind, err := sniffArchive(file)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if kind == kindCIFAR {
		f.Close()
		return ReadCIFAR10ArchiveFile(ctx, file)
	}
	return ReadImageArchive(ctx, f, file, FolderOptions{Size: lo.Size, Progress: lo.Progress})
}

// sniffArchive reads tar headers until a CIFAR-10 batch or an image member.
func sniffArchive(file string) (dirKind, error) {
	f, err := os.Open(file)
	if err != nil {
		return kindUnknown, err
	}
	defer f.Close()
	zr, done, err := maybeGunzip(f, file)
	if err != nil {
		return kindUnknown, err
	}
	defer done()
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return kindUnknown, formatErr(file, -1, ErrUnknownFormat, "archive holds neither CIFAR-10 batches nor <split>/<class>/ images")
		}
		if err != nil {
			return kindUnknown, formatErr(file, -1, err, "tar")
		}
		switch base := path.Base(hdr.Name); {
		case cifarBatch.MatchString(base):
			return kindCIFAR, nil
		case imageExt(base):
			return kindFolders, nil
		}
	}
}

// ImageToCHW writes img into dst as planar RGB in [0, 1]; it is
// NewResizer(size).Convert(dst, img), for one-off use.
func ImageToCHW(dst []float32, img image.Image, size int) error {
	return NewResizer(size).Convert(dst, img)
}

// Resizer turns decoded images into planar RGB float32 of one output size.
// It owns its scratch memory and caches the filter weights per input size,
// so converting a folder of images allocates nothing per image once warm.
// It is not safe for concurrent use: use one per worker.
type Resizer struct {
	size    int
	rgba    []byte
	plane   []float32
	tmp     []float32
	weights map[[2]int][][]tap
}

// NewResizer returns a Resizer to size x size (size > 0), or one that keeps
// each image's own size (size 0).
func NewResizer(size int) *Resizer {
	return &Resizer{size: max(size, 0), weights: map[[2]int][][]tap{}}
}

func (r *Resizer) areaWeights(n, m int) [][]tap {
	k := [2]int{n, m}
	w, ok := r.weights[k]
	if !ok {
		w = areaWeights(n, m)
		if len(r.weights) > 64 { // many distinct sizes: bound the cache
			clear(r.weights)
		}
		r.weights[k] = w
	}
	return w
}

// Convert writes img into dst as planar RGB in [0, 1] (3*H*W values). With
// size > 0 the largest centered square is cut out and resized to size x
// size by exact area averaging: each output pixel is the mean of the input
// area it covers, partial pixels weighted by the fraction covered, the
// filter that does not alias when shrinking (the one used to make the
// 64 px ImageNet-10 copy). With size 0 the image is copied at its own size.
// Alpha is composited over black (premultiplied RGBA), gray is replicated
// to R = G = B. dst must have the right length, else a *tensor.ShapeError.
func (r *Resizer) Convert(dst []float32, img image.Image) error {
	bd := img.Bounds()
	w, h := bd.Dx(), bd.Dy()
	if w <= 0 || h <= 0 {
		return fmt.Errorf("empty image")
	}
	crop := bd
	if r.size > 0 {
		s := min(w, h)
		x0, y0 := bd.Min.X+(w-s)/2, bd.Min.Y+(h-s)/2
		crop = image.Rect(x0, y0, x0+s, y0+s)
	}
	cw, ch := crop.Dx(), crop.Dy()
	ow, oh := cw, ch
	if r.size > 0 {
		ow, oh = r.size, r.size
	}
	if len(dst) != 3*ow*oh {
		return &tensor.ShapeError{Op: "dataset.Resizer.Convert", Want: []int{3 * ow * oh}, Got: []int{len(dst)}}
	}
	if cap(r.rgba) < 4*cw*ch {
		r.rgba = make([]byte, 4*cw*ch)
	}
	rgba := &image.RGBA{Pix: r.rgba[:4*cw*ch], Stride: 4 * cw, Rect: image.Rect(0, 0, cw, ch)}
	draw.Draw(rgba, rgba.Bounds(), img, crop.Min, draw.Src)
	if r.size == 0 {
		for y := 0; y < ch; y++ {
			row := rgba.Pix[y*rgba.Stride:]
			for x := 0; x < cw; x++ {
				for c := 0; c < 3; c++ {
					dst[(c*ch+y)*cw+x] = byteToUnit[row[4*x+c]]
				}
			}
		}
		return nil
	}
	// Planar float input, then separable area resize per channel.
	if cap(r.plane) < cw*ch {
		r.plane = make([]float32, cw*ch)
	}
	if cap(r.tmp) < ow*ch {
		r.tmp = make([]float32, ow*ch)
	}
	plane, tmp := r.plane[:cw*ch], r.tmp[:ow*ch]
	wx := r.areaWeights(cw, ow)
	wy := r.areaWeights(ch, oh)
	for c := 0; c < 3; c++ {
		for y := 0; y < ch; y++ {
			row := rgba.Pix[y*rgba.Stride:]
			for x := 0; x < cw; x++ {
				plane[y*cw+x] = byteToUnit[row[4*x+c]]
			}
		}
		out := dst[c*ow*oh : (c+1)*ow*oh]
		// Horizontal pass: (ch, cw) -> (ch, ow).
		for y := 0; y < ch; y++ {
			in := plane[y*cw : (y+1)*cw]
			for o, ws := range wx {
				var acc float32
				for _, t := range ws {
					acc += t.w * in[t.i]
				}
				tmp[y*ow+o] = acc
			}
		}
		// Vertical pass: (ch, ow) -> (oh, ow).
		for o, ws := range wy {
			row := out[o*ow : (o+1)*ow]
			clear(row)
			for _, t := range ws {
				in := tmp[t.i*ow : (t.i+1)*ow]
				for x := range row {
					row[x] += t.w * in[x]
				}
			}
		}
		tensor.Clip(out, 0, 1)
	}
	return nil
}

type tap struct {
	i int
	w float32
}

// areaWeights returns, for each of m output samples covering n input
// samples, the input indices and weights of exact area averaging: output o
// covers [o*n/m, (o+1)*n/m) and input i gets weight |[i, i+1) ∩ that| * m/n.
// The weights of each output sum to 1.
func areaWeights(n, m int) [][]tap {
	out := make([][]tap, m)
	scale := float64(n) / float64(m)
	for o := range out {
		lo, hi := float64(o)*scale, float64(o+1)*scale
		for i := int(lo); i < n && float64(i) < hi; i++ {
			ov := min(hi, float64(i+1)) - max(lo, float64(i))
			if ov > 1e-12 {
				out[o] = append(out[o], tap{i, float32(ov / scale)})
			}
		}
	}
	return out
}
