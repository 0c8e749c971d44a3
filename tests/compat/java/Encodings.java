import java.util.*;
import org.rosuda.REngine.*;
import org.rosuda.REngine.Rserve.*;

/** Strings assigned from Java and deeply nested results, as a server sees and sends them. */
public class Encodings {
    static String probe(int port, String encoding) {
        RConnection c = null;
        try {
            c = new RConnection("127.0.0.1", port);
            if (encoding != null) c.setStringEncoding(encoding);
            c.assign("s", new String[] {"\u00e9t\u00e9", "a", "\u65e5\u672c"});
            c.assign("t", "na\u00efve");
            String marks = c.eval("paste(c(Encoding(s), Encoding(t), Encoding('\u00e0'),"
                + " s[1] == '\u00e9t\u00e9', t == 'na\u00efve'), collapse = ' ')").asString();
            return marks + " | " + Arrays.toString(c.eval("s").asStrings());
        } catch (Exception e) {
            return "failure " + e.getClass().getSimpleName();
        } finally {
            if (c != null) c.close();
        }
    }

    static String deep(int port, String code) {
        RConnection c = null;
        try {
            c = new RConnection("127.0.0.1", port);
            REXP x = c.eval(code);
            int depth = 0;
            while (x != null && x.isList()) {
                RList items = x.asList();
                int next = x.isLanguage() ? 1 : 0;  // into a call's first argument
                if (items.size() <= next) break;
                x = items.at(next);
                depth++;
            }
            return "depth " + depth + " " + (x == null ? "null" : x.toDebugString().replaceAll("@[0-9a-f]+", ""));
        } catch (Exception e) {
            return "failure " + e.getClass().getSimpleName();
        } finally {
            if (c != null) c.close();
        }
    }

    public static void main(String[] args) throws Exception {
        int a = Integer.parseInt(args[0]), b = Integer.parseInt(args[1]);
        String[][] cases = {
            {"marks-native", null},
            {"marks-utf8", "utf8"},
        };
        for (String[] kase : cases) {
            String x = probe(a, kase[1]), y = probe(b, kase[1]);
            System.out.println(kase[0] + " " + (x.equals(y) ? "TRUE" : "FALSE"));
            if (!x.equals(y)) System.err.println(kase[0] + ": " + x + " <> " + y);
        }
        String[][] deep = {
            {"deep-list", "local({x <- list(1L); for (i in 1:1000) x <- list(x); x})"},
            {"deep-call", "local({x <- 1; for (i in 1:500) x <- call('f', x, a = i); x})"},
        };
        for (String[] kase : deep) {
            String x = deep(a, kase[1]), y = deep(b, kase[1]);
            System.out.println(kase[0] + " " + (x.equals(y) ? "TRUE" : "FALSE"));
            if (!x.equals(y)) System.err.println(kase[0] + ": " + x + " <> " + y);
        }
    }
}
