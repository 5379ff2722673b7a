package main

import "fmt"

// checkIDs rejects token ids outside [0, vocab) before anything is sized by
// them, naming where (file:line) the sequence came from.
func checkIDs(ids []int, vocab int, where string) error {
	for j, id := range ids {
		if id < 0 || id >= vocab {
			return fmt.Errorf("%s: token %d: id %d is outside the vocabulary (size %d)", where, j, id, vocab)
		}
	}
	return nil
}
