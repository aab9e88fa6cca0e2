package cli

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

// parse registers the flags on a standard library flag set (as stl-beam
// does), parses args and returns the flags and what was given.
func parse(t *testing.T, args ...string) (AttackFlags, func(string) bool) {
	t.Helper()
	var f AttackFlags
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return f, func(name string) bool { return set[name] }
}

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
		{[]string{"--model", "m", "--out", "o", "--protocol", "paper"}, "--protocol \"paper\""},
		{[]string{"--model", "m", "--out", "o", "--protocol", "guo", "--norm", "l2"}, "drop --norm"},
	} {
		f, changed := parse(t, c.args...)
		err := f.Check(changed)
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
	f, _ := parse(t, "--attack", "pgd", "--steps", "7", "--seed", "9", "--budget", "0.02")
	s, c, err := f.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Method != "pgd" || c.PGD.Steps != 7 || c.PGD.Seed != 9 || s.Budget.Eps != 0.02 || !c.PGD.RandomStart {
		t.Errorf("pgd setting %+v, config %+v", s, c.PGD)
	}
}
