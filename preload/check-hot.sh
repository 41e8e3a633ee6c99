#!/bin/sh
# preload/check-hot.sh HOT_LD SOURCES... - run by the Makefile just before
# the relocatable link with preload/hot.ld.  A section pattern of hot.ld that
# matches nothing is silently ignored by the linker, so a function or
# variable renamed in the sources would quietly fall out of the layout;
# this fails the build instead: every name hot.ld lists (.text.NAME,
# .bss.NAME, .data.NAME) must still occur in the library's sources.
# (A static function the compiler inlined has no section of its own; its
# name is still in the sources, which is all this checks.)
hot=$1
shift
status=0
for name in $(sed -n 's/.*\*(\.\(text\|bss\|data\|rodata\|tbss\|tdata\)\.\([A-Za-z_][A-Za-z0-9_]*\)[ )].*/\2/p' "$hot" | sort -u); do
    if ! grep -qw -- "$name" "$@"; then
        echo "$hot: '$name' is not in the library's sources (renamed? update $hot)" >&2
        status=1
    fi
done
exit $status
