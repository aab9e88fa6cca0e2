package report_test

import (
	"fmt"
	"os"

	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
)

func ExampleWriteText() {
	acc := func(c, n int) *metrics.Accuracy { a := metrics.NewAccuracy(c, n); return &a }
	t := report.Table{ID: "table1", Title: "Table 1 form", Columns: []string{report.ColClean, report.ColFGSM008}, Rows: []report.Row{
		{Defense: "No Defense", Cells: []report.Cell{{Acc: acc(93, 100)}, {Acc: acc(58, 100)}}},
		{Defense: "STL (cluster)", Cells: []report.Cell{{Acc: acc(90, 100)}, {Missing: "attack not run"}}},
	}}
	report.AttachPaper(&t, report.PaperTable1)
	r := &report.Results{Name: "example", Data: report.Data{Name: "sample:cifar10", Train: 2000, Test: 100, Channels: 3, Height: 32, Width: 32}, Tables: []report.Table{t}}
	if err := report.WriteText(os.Stdout, r); err != nil {
		fmt.Println(err)
	}
	// Output:
	// Run example: sample:cifar10, 2000 train / 100 test images, 3x32x32
	//
	// Table 1 form
	// Defense        Clean                 FGSM-0.08
	// No Defense     0.930 [0.863, 0.966]  0.580 [0.482, 0.672]
	//   paper        0.9298                0.5816
	// STL (cluster)  0.900 [0.826, 0.945]  —
	//   paper        0.9011                0.8567
	// (accuracy [Wilson 95% interval]; "paper": Table 1 (CIFAR-10, VGG-16, retrained) of Sun et al. 2019)
}
