package config

// Kind is a kind of config file; Kinds combine with |.
type Kind uint8

const (
	// Run is the run config of `ares sft`, `ares train-rm` and `ares repair`.
	Run Kind = 1 << iota
	// Redteam is the config of `ares redteam`.
	Redteam
	// Study is the config of `ares bench study`.
	Study
)

// Rename is a key that an older version of a config read under another
// name. Old is a dotted key or table; a table's keys move with it.
type Rename struct {
	Old, New string
	// In are the kinds of config that refuse Old (each one that has New).
	In Kind
}

func (r Rename) message() string { return "renamed to " + r.New }

// Renamed is the table of renamed keys (docs/config.md, "Renamed keys"):
// a file that sets an old key is refused with the new name, never read with
// the old one silently.
var Renamed = []Rename{
	{Old: "run.out_dir", New: "run.out", In: Run | Redteam | Study},
	{Old: "study.out", New: "run.out", In: Study},
	{Old: "study.name", New: "run.name", In: Study},
	{Old: "study.device", New: "run.device", In: Study},
	{Old: "study.dtype", New: "run.dtype", In: Study},
	{Old: "models.device", New: "run.device", In: Run | Redteam | Study},
	{Old: "models.dtype", New: "run.dtype", In: Run | Redteam | Study},
	{Old: "models.threads", New: "run.threads", In: Redteam},
	{Old: "redteam.seed", New: "run.seed", In: Redteam},
	{Old: "rm", New: "train_rm", In: Run | Study},
	{Old: "joint_bt", New: "joint.bt", In: Run | Study},
}
