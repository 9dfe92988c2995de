package source

// Limits on what a configuration may hold. Real configurations sit far below every one of them:
// the shipped persona files are under 1 KB and the benchmark configuration (1,000 rules,
// 100 personas, 1,000 rule tests) under 1 MB. They exist so that a mistaken or hostile edit is
// refused with a positioned error while the last good configuration keeps serving, instead of
// exhausting the memory or time of the process that loads it. Each is checked before the work
// it protects: sizes before reading, node counts before walking, counts of rules before
// compiling them.
const (
	// MaxFileBytes bounds one file. It is checked against the file's size before the file is
	// read, and the read itself stops one byte past it, so a file that grows meanwhile cannot
	// slip through.
	MaxFileBytes = 1 << 20

	// MaxConfigBytes bounds all the files of a configuration together, both directories.
	MaxConfigBytes = 32 << 20

	// MaxRuleFiles bounds the YAML files of the rules directory.
	MaxRuleFiles = 1_000

	// MaxPersonas bounds the YAML files of the personas directory, which hold one persona
	// each.
	MaxPersonas = 1_000

	// MaxNodes bounds the values, keys and list items of one file after its aliases are
	// expanded: an alias counts the whole of what it stands for, every time it is used. Without
	// it a small file of aliases to aliases expands to gigabytes ("billion laughs").
	MaxNodes = 100_000

	// MaxExpandedBytes bounds the text of one file's values and keys after its aliases are
	// expanded, for the same reason as MaxNodes: a few aliases to one long string would
	// otherwise be copied, compiled or compared once per use.
	MaxExpandedBytes = 8 << 20

	// MaxConfigNodes and MaxConfigExpandedBytes bound the same for all the rules files of a
	// configuration together: rule tests keep what their requests and expectations expand to,
	// and a thousand files each just under the limits of one file would otherwise add up to
	// gigabytes. (Persona files hold only strings, numbers and booleans: what their aliases
	// expand to is never walked.) A configuration of 10,000 rules and 10,000 rule tests comes
	// to about 300,000 nodes; MaxConfigExpandedBytes is twice what MaxConfigBytes allows
	// without aliases.
	MaxConfigNodes         = 1_000_000
	MaxConfigExpandedBytes = 2 * MaxConfigBytes

	// MaxStringBytes bounds one value as written (a systemPrompt, a when expression, any
	// string). 32 KiB is about 8,000 LLM tokens: the whole context window of smaller models and
	// more than thirty times the longest shipped system prompt. Anam documents no limit of its
	// own.
	MaxStringBytes = 32 << 10

	// MaxRules bounds the rules of a configuration, across all rules files; each is compiled
	// at load and may be evaluated on every request.
	MaxRules = 10_000

	// MaxTests bounds the rule tests of a configuration, all of which run on every load.
	MaxTests = 10_000

	// MaxErrors bounds the errors a load reports. Once a load has found more, it reads no
	// further file: a file of a million mistakes must not cost a gigabyte of messages, and
	// nobody reads past the first thousand.
	MaxErrors = 1_000
)
