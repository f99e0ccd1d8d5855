from multiscale.data.roff import roff_to_text

PAGE = r""".\" -*- coding: UTF-8 -*-
.\" a comment line
.de XX
should not appear
..
.TH LS 1 "2022" "GNU coreutils" "User Commands"
.SH NAME
ls \- list directory contents
.SH DESCRIPTION
.PP
List information about the FILEs (the current directory by default).
Sort entries \fBalphabetically\fP if none of \fB\-cftuvSUX\fR is given.\" trailing comment
.TP
\fB\-a\fP, \fB\-\-all\fP
do not ignore entries starting with \(lq.\(rq \(em really\&.
.BR ls (1)
and
.IR dir (1).
.EX
code example line
.EE
.TS
tab(;);
l l.
cell one;cell two
.TE
caf\[u00E9] na\[:i]ve \*(lqquoted\*(rq
"""


def test_man_macros_are_stripped_and_prose_kept():
    text = roff_to_text(PAGE)
    lines = text.split("\n")
    assert lines[0] == "NAME"
    assert lines[1] == "ls - list directory contents"
    assert "Sort entries alphabetically if none of -cftuvSUX is given." in text
    assert "-a, --all do not ignore entries starting with \u201c.\u201d \u2014 really." in text
    assert "ls(1) and dir(1)." in text
    assert "café" in text and "\u201cquoted\u201d" in text
    for junk in ("should not appear", "code example", "trailing comment", "coding", ".TH", "\\f", "tab(;)"):
        assert junk not in text
    assert "cell one;cell two" in text


def test_mdoc_macros():
    page = ".Dd 2020\n.Dt LS 1\n.Sh NAME\n.Nm ls\n.Nd list files\n.Sh DESCRIPTION\n.It Fl a\nshow all\n"
    text = roff_to_text(page)
    assert "NAME" in text and "ls list files" in text
    assert "a show all" in text
    assert "Fl" not in text and "Dd" not in text
