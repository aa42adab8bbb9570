# Maven's output cut to progress a log can keep (deploy/local/kafka.sh pipes `mvn -B` through
# it): one line per jar downloaded (name, size), a count every 50 other files (POMs), errors and
# warnings, a total at the end. Maven 3.8 writes ANSI resets (ESC[0m) even in batch mode with
# colours off, so every escape sequence is stripped first.
{ gsub(/\033\[[0-9;]*[A-Za-z]/, "") }
/Downloaded from [^ ]+: / {
  files++
  name = ""
  for (i = 1; i <= NF; i++) if ($i ~ /^https?:\/\//) name = $i
  sub(/.*\//, "", name)
  size = $0; sub(/.*\(/, "", size); sub(/ at .*/, "", size); sub(/\)$/, "", size)
  if (name ~ /\.jar$/) { printf "kafka: downloaded %s (%s)\n", name, size; fflush() }
  else if (files % 50 == 0) { printf "kafka: %d files downloaded\n", files; fflush() }
  next
}
/^\[(ERROR|WARNING)\]/ { print "kafka: maven: " $0; fflush() }
END { if (files) printf "kafka: %d files downloaded from Maven Central\n", files }
