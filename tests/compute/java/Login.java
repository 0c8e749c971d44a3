import org.rosuda.REngine.Rserve.*;
import org.rosuda.REngine.Rserve.protocol.jcrypt;

/** Log in with the Java client (RConnection.login: crypt when the server offers ARuc,
    else plain text) and evaluate, printing one line per attempt; "crypt SALT PASSWORD"
    prints jcrypt's DES crypt, to compare with libcrypt. */
public class Login {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("crypt")) {
            System.out.println(jcrypt.crypt(args[1], args[2]));
            return;
        }
        int port = Integer.parseInt(args[0]);
        for (int i = 1; i + 1 < args.length; i += 2) {
            RConnection c = null;
            try {
                c = new RConnection("127.0.0.1", port);
                String need = c.needLogin() ? "login" : "open";
                c.login(args[i], args[i + 1]);
                System.out.println(need + " ok " + c.eval("paste(R.version$major, 1 + 1)").asString());
            } catch (RserveException e) {
                System.out.println("refused " + e.getRequestReturnCode());
            } finally {
                if (c != null) c.close();
            }
        }
    }
}
