"""Schemathesis hooks for the OpenAPI system test (cli/tests/system/openapi.rs).

CPython 3.11 (3.11.7 on these machines) can fail `ast.parse` with "SystemError: AST constructor
recursion depth mismatch": its AST recursion-depth bookkeeping is shared state. Hypothesis calls
`ast.parse` on its callers' source only to describe lambdas in the repr of a strategy, and the
error aborts a schemathesis operation at random. Lambdas are described without parsing: reprs
are plainer, the generated data is the same.
"""

from hypothesis.internal import lambda_sources

lambda_sources._lambda_description = lambda f, *args, **kwargs: "lambda: <unknown>"
