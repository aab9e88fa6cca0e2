package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/stl-defense/stl/tensor"
)

// GridRow is one row of an image grid: a name drawn at its left and a
// batch of images (N, C, H, W) with C 1 or 3 and pixels in [0,1].
type GridRow struct {
	Name   string
	Images *tensor.Tensor
}

// Grid is the qualitative comparison of the paper's Figures 3 and 4 laid
// out by rows: the adversarial images, each defense's output for them, and
// the clean images, one example per column. Every row must hold images of
// one shape.
type Grid struct {
	Rows []GridRow
	// Scale enlarges each pixel to Scale x Scale (nearest neighbour); 0
	// picks 3 for images up to 64 px and 1 above.
	Scale int
	// MaxColumns limits the number of examples drawn (0: 8).
	MaxColumns int
}

// Image renders the grid on a white background. It returns a
// *tensor.ShapeError when rows differ in image shape or are not image
// batches.
func (g *Grid) Image() (*image.RGBA, error) {
	if len(g.Rows) == 0 {
		return nil, fmt.Errorf("report: empty image grid")
	}
	n, c, h, w, err := g.Rows[0].Images.NCHW()
	if err != nil {
		return nil, err
	}
	if c != 1 && c != 3 {
		return nil, &tensor.ShapeError{Op: "report.Grid", Want: []int{-1, 3, h, w}, Got: g.Rows[0].Images.Shape}
	}
	for _, r := range g.Rows[1:] {
		rn, rc, rh, rw, err := r.Images.NCHW()
		if err != nil {
			return nil, err
		}
		if rc != c || rh != h || rw != w {
			return nil, &tensor.ShapeError{Op: "report.Grid", Want: []int{-1, c, h, w}, Got: r.Images.Shape}
		}
		n = min(n, rn)
	}
	cols := g.MaxColumns
	if cols <= 0 {
		cols = 8
	}
	cols = min(cols, n)
	scale := g.Scale
	if scale <= 0 {
		scale = 1
		if h <= 64 {
			scale = 3
		}
	}
	face := basicfont.Face7x13
	label := 0
	for _, r := range g.Rows {
		label = max(label, font.MeasureString(face, r.Name).Ceil())
	}
	const gap, margin = 4, 6
	cw, ch := w*scale, h*scale
	rowH := max(ch, 13)
	width := margin + label + margin + cols*(cw+gap) - gap + margin
	height := margin + len(g.Rows)*(rowH+gap) - gap + margin
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	d := &font.Drawer{Dst: img, Src: image.Black, Face: face}
	plane := h * w
	for ri, r := range g.Rows {
		y0 := margin + ri*(rowH+gap)
		d.Dot = fixed.P(margin, y0+rowH/2+5)
		d.DrawString(r.Name)
		for k := 0; k < cols; k++ {
			x0 := margin + label + margin + k*(cw+gap)
			px := r.Images.Data[k*c*plane : (k+1)*c*plane]
			for y := 0; y < ch; y++ {
				for x := 0; x < cw; x++ {
					i := (y/scale)*w + x/scale
					var rgb [3]uint8
					for ch := 0; ch < 3; ch++ {
						v := px[min(ch, c-1)*plane+i]
						rgb[ch] = to8(v)
					}
					img.SetRGBA(x0+x, y0+y, color.RGBA{rgb[0], rgb[1], rgb[2], 255})
				}
			}
		}
	}
	return img, nil
}

func to8(v float32) uint8 {
	switch {
	case !(v > 0): // also NaN
		return 0
	case v >= 1:
		return 255
	}
	return uint8(v*255 + 0.5)
}

// EncodePNG renders the grid and writes it to w as PNG.
func (g *Grid) EncodePNG(w io.Writer) error {
	img, err := g.Image()
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}
