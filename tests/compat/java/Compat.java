import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import org.rosuda.REngine.*;
import org.rosuda.REngine.Rserve.*;

public class Compat {
    static String unhex(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        return new String(b, StandardCharsets.UTF_8);
    }

    static String describe(REXP x) throws Exception {
        if (x == null) return "null";
        StringBuilder s = new StringBuilder(x.toDebugString().replaceAll("@[0-9a-f]+", ""));
        if (x.isVector() && !x.isList()) {
            try { s.append(" strings=").append(Arrays.toString(x.asStrings())); } catch (Exception e) { }
            try { s.append(" doubles=").append(Arrays.toString(x.asDoubles())); } catch (Exception e) { }
        }
        if (x.isFactor()) s.append(" factor=").append(Arrays.toString(x.asFactor().asStrings()));
        return s.toString();
    }

    static String answer(int port, String setup, String code) {
        RConnection c = null;
        try {
            c = new RConnection("127.0.0.1", port);
            c.voidEval(setup);
            try {
                return describe(c.eval(code));
            } catch (RserveException e) {
                return "error " + e.getRequestReturnCode() + " " + c.eval("geterrmessage()").asString();
            }
        } catch (Exception e) {
            return "failure " + e.getClass().getSimpleName();
        } finally {
            if (c != null) c.close();
        }
    }

    public static void main(String[] args) throws Exception {
        int a = Integer.parseInt(args[0]), b = Integer.parseInt(args[1]);
        String setup = unhex(args[3]);
        List<String> cases = Files.readAllLines(Paths.get(args[2]));
        for (int i = 0; i < cases.size(); i++) {
            String code = unhex(cases.get(i));
            String x = answer(a, setup, code), y = answer(b, setup, code);
            System.out.println((i + 1) + " " + (x.equals(y) ? "TRUE" : "FALSE"));
            if (!x.equals(y)) System.err.println((i + 1) + ": " + x + " <> " + y);
        }
        // assignment through the Java API, read back
        for (int port : new int[] {a, b}) {
            RConnection c = new RConnection("127.0.0.1", port);
            c.assign("s", new String[] {"a", "b", null});
            c.assign("v", new REXPInteger(new int[] {4, 5, 6}));
            c.assign("d", new double[] {1.5, REXPDouble.NA});
            System.out.println("assign " + c.eval("paste(c(is.na(s), sum(v), is.na(d[2])), collapse = \" \")").asString());
            c.close();
        }
    }
}
