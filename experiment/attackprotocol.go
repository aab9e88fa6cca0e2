package experiment

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/internal/safefile"
)

// checkProtocol reports an unknown Protocol.
func (o AttackOptions) checkProtocol() error {
	_, err := attack.ParseProtocol(string(o.Protocol))
	return err
}

// round8 reports whether the images are rounded: Round8, or a protocol
// that rounds.
func (o AttackOptions) round8() bool { return o.Round8 || o.Protocol.Round8() }

// partialDir is where an interrupted run keeps its checkpoints.
func (o AttackOptions) partialDir() string { return filepath.Join(o.Out, ".partial") }

// rounded returns a rounded to 8 bits (attack.Rounded) when the job's
// options round, a otherwise.
func (j *AttackJob) rounded(a attack.Attack) attack.Attack {
	if j.opts.round8() && !attack.IsRounded(a) {
		return attack.Rounded(a)
	}
	return a
}

// ProtocolString names the job's attack protocol for a command's output,
// followed by " with 8-bit rounding" when the images are rounded, e.g.
// "release with 8-bit rounding" or "text".
func (j *AttackJob) ProtocolString() string {
	if j.opts.round8() {
		return j.opts.record().String()
	}
	return j.opts.Protocol.String()
}

// partialProtocolFile is the file of a checkpoint directory that records
// the protocol and rounding its batches were computed under.
const partialProtocolFile = "protocol.json"

// protocolRecord is partialProtocolFile's content.
type protocolRecord struct {
	Protocol attack.Protocol `json:"protocol"`
	Round8   bool            `json:"round8"`
}

func (r protocolRecord) String() string {
	if r.Round8 {
		return r.Protocol.String() + " with 8-bit rounding"
	}
	return r.Protocol.String() + " without rounding"
}

// record is o's protocolRecord ("" read as attack.ProtocolText).
func (o AttackOptions) record() protocolRecord {
	return protocolRecord{attack.Protocol(o.Protocol.String()), o.round8()}
}

// ProtocolMismatchError reports an interrupted attack whose checkpointed
// batches were computed under another protocol or rounding than the run
// resuming them asks for: under another protocol the same options name
// other budgets, so the batches are neither reused nor silently replaced.
type ProtocolMismatchError struct {
	Dir                     string // the checkpoint directory
	Saved, Wanted           attack.Protocol
	SavedRound8, WantRound8 bool
}

func (e *ProtocolMismatchError) Error() string {
	return fmt.Sprintf("%s holds batches of an interrupted attack under protocol %s, and this run asks for protocol %s: "+
		"run again with the interrupted run's protocol and rounding to resume it, or remove %s to start over",
		e.Dir, protocolRecord{e.Saved, e.SavedRound8}, protocolRecord{e.Wanted, e.WantRound8}, e.Dir)
}

// checkPartial returns a *ProtocolMismatchError when the checkpoint
// directory holds batches to resume computed under another protocol or
// rounding than o's (batches saved before protocols were recorded count as
// the text protocol without rounding). Without batches there is nothing to
// resume, and nothing to check.
func (o AttackOptions) checkPartial() error {
	dir := o.partialDir()
	if batches, _ := filepath.Glob(filepath.Join(dir, "batch-*")); len(batches) == 0 {
		return nil
	}
	saved := protocolRecord{Protocol: attack.ProtocolText}
	b, err := os.ReadFile(filepath.Join(dir, partialProtocolFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &saved); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, partialProtocolFile), err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if want := o.record(); saved.Protocol.String() != want.Protocol.String() || saved.Round8 != want.Round8 {
		return &ProtocolMismatchError{Dir: dir, Saved: saved.Protocol, Wanted: want.Protocol, SavedRound8: saved.Round8, WantRound8: want.Round8}
	}
	return nil
}

// claimPartial checks the checkpoint directory (checkPartial) and records
// o's protocol and rounding there, before batches are checkpointed.
func (o AttackOptions) claimPartial() error {
	if err := o.checkPartial(); err != nil {
		return err
	}
	dir := o.partialDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.Marshal(o.record())
	if err != nil {
		return err
	}
	return safefile.WriteBytes(filepath.Join(dir, partialProtocolFile), append(js, '\n'))
}
