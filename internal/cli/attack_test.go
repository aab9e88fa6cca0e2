package cli

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestAttackFlagsStandardFlagSet registers the flags on the standard
// library's flag set (as stl-beam does) and checks them as stl attack
// does: what a command line gets wrong is a UsageError naming it.
func TestAttackFlagsStandardFlagSet(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--model", "m", "--out", "o"}, ""},
		{[]string{"--model", "m", "--out", "o", "--attack", "pgd", "--steps", "3", "--budget", "0.03"}, ""},
		{[]string{"--out", "o"}, "--model is required"},
		{[]string{"--model", "m", "--out", "o", "--attack", "deepfool", "--steps", "3"}, "--steps does not apply"},
		{[]string{"--model", "m", "--out", "o", "--budget", "2"}, "(0, 1]"},
		{[]string{"--model", "m", "--out", "o", "--attack", "uap", "--targeted"}, "--targeted"},
		{[]string{"--model", "m", "--out", "o", "--attack", "nope"}, "--attack \"nope\""},
	} {
		var f AttackFlags
		fs := flag.NewFlagSet("attack", flag.ContinueOnError)
		f.Register(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		err := f.Check(func(name string) bool { return set[name] })
		var ue UsageError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v, want a UsageError mentioning %q", c.args, err, c.want)
		}
	}
}

// TestAttackFlagsConfig: the flags that apply override the method's
// defaults in the registry's configuration.
func TestAttackFlagsConfig(t *testing.T) {
	var f AttackFlags
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--attack", "pgd", "--steps", "7", "--seed", "9", "--budget", "0.02"}); err != nil {
		t.Fatal(err)
	}
	m, c, err := f.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "pgd" || c.PGD.Steps != 7 || c.PGD.Seed != 9 || c.PGD.Budget.Eps != 0.02 || !c.PGD.RandomStart {
		t.Errorf("pgd config %+v", c.PGD)
	}
}
