package persona

import (
	"errors"

	"github.com/expr-lang/expr/vm"
)

// TEMPORARY until the helpers land.
func exprConstant(*vm.Program) bool             { return false }
func exprEvalConstant(*vm.Program) (any, error) { return nil, errors.New("stub") }
func checkJSONSchema(any) error                 { return nil }
