// Package checkpoints saves and loads ARES training state: sharded,
// compressed, checksummed checkpoint directories written atomically, and
// safetensors import/export. It is
// pure Go (no cgo); the engine hands it tensors as (name, dtype, shape,
// little-endian bytes) one at a time and reads them back the same way.
//
// # Layout
//
// A checkpoint is a directory:
//
//	manifest.json      format version, step, data position, metadata, and the
//	                   index: per tensor name, group, dtype, shape, size, codec,
//	                   CRC-32C of the raw bytes, and its chunks (shard, offset,
//	                   length, CRC-32C of the stored bytes); blobs likewise;
//	                   and the manifest's own checksum
//	shard-00000.ares   concatenated stored chunks, each shard at most
//	shard-00001.ares   Options.ShardSize bytes
//
// The manifest checksum ("checksum": "sha256:<hex>", format version 2 on)
// is the SHA-256 of the manifest's canonical encoding: the compact
// encoding/json encoding of the manifest with the checksum field empty. It
// covers every value (step, data position, metadata, index) and none of
// the file's layout. Open refuses a manifest whose content does not match
// it, so a flipped bit in the step counter or data position is never
// resumed from; a version 1 manifest (written before checksums) has none
// and is still read, and a manifest that carries one is checked whatever
// its version field says. Committed golden checkpoints of every version
// (testdata/golden-v<N>) are read by the tests of every later build.
//
// Tensors are cut into chunks (4 MiB raw by default) compressed in
// parallel. A float chunk is split into byte planes (byte k of every
// element); each plane is stored raw (mantissa bytes, near-random), as a
// literal-only zstd frame (sign/exponent bytes), as a regular zstd frame
// (sparse planes), or elided if all zero. Loading never executes code.
//
// # Saving
//
//	w, err := checkpoints.Create(dir, &checkpoints.Options{})
//	w.SetStep(step)
//	w.SetDataPosition(json.RawMessage(`{"epoch":1,"batch":420}`))
//	w.SetMetadata("model", "policy")
//	for each tensor: w.AddTensor(checkpoints.TensorInfo{Name, Group, DType, Shape}, bytes)
//	w.AddBlob(checkpoints.BlobConfig, configTOML)
//	w.AddBlob(checkpoints.BlobTokenizer, tokenizerJSON)
//	w.AddBlob(checkpoints.BlobRNGPrefix+"cpu", rngState)
//	err = w.Commit() // or w.Abort()
//
// AddTensor returns once the bytes are no longer needed, so the caller can
// copy a tensor off the device, add it, and free it: a save never holds a
// second copy of the model. Commit syncs the shards and the manifest and
// renames the temporary directory into place.
//
// A Manager handles a run directory: Save(step, fill) commits
// step-NNNNNNNNNNNN atomically, then writes the `latest` pointer, then
// rotates old checkpoints (keep last N); OpenLatest resumes from the newest
// complete checkpoint, passing over damaged ones and returning, for each,
// a *RejectedError naming it and saying why.
//
// Delta checkpoints (stored as differences from a base checkpoint), which
// older versions could write, are no longer supported: Open refuses them
// with an error wrapping ErrDelta. Measured on a repair stage they did not
// pay: each was only 4-5% smaller than a full checkpoint, since the AdamW
// moments (two thirds of a checkpoint) change completely every step, so
// with the base they cost more disk in all. A LoRA adapter is the compact
// way to store a repaired model.
//
// # Loading
//
//	r, err := checkpoints.Open(dir, nil)
//	for _, t := range r.Tensors() { r.ReadTensor(t.Name, buf) }
//	cfg, err := r.Blob(checkpoints.BlobConfig)
//	m := r.Manifest() // Step, DataPosition, Metadata, Extra
//
// Open checks the manifest's checksum; ReadTensor checks every stored
// chunk's checksum and the decoded tensor's checksum; Verify checks
// everything (re-reading the manifest) and lists every problem by tensor,
// chunk and shard.
//
// Package safetensors (a sub-package) reads and writes Hugging Face
// safetensors files and sharded sets; Import and Export convert.
package checkpoints
