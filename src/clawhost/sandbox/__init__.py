"""What plugin code may do and for how long: permissions and the sandbox scope, the audit
hook, deadlines, the loop watchdog, the thread pool for synchronous plugin code.

Layer rules and the package map: docs/design.md, "Package map".
"""
