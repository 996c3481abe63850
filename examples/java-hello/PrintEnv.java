// The seeds' hello-user program in Java: greets API_USER and proves it received API_PASSWORD.
// It prints a SHA-256 checksum of the password, never the password itself.

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HexFormat;

public class PrintEnv {
    public static void main(String[] args) throws Exception {
        String user = System.getenv().getOrDefault("API_USER", "<unset>");
        String password = System.getenv("API_PASSWORD");
        System.out.println("Hello " + user);
        if (password == null) {
            System.out.println("API_PASSWORD is not set");
        } else {
            byte[] digest = MessageDigest.getInstance("SHA-256")
                .digest(password.getBytes(StandardCharsets.UTF_8));
            System.out.println("API_PASSWORD sha256 checksum: " + HexFormat.of().formatHex(digest));
        }
    }
}
