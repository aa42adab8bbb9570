// The Java client's keyed partitioning, run from the kafka-clients jar: for each key (hex on
// stdin, one per line) prints `murmur2 p1 p2 ...` where p_i = the partition among each count
// given as arguments. Both Utils (the hash the docs name) and BuiltInPartitioner (what
// KafkaProducer calls for a keyed record) are asked, and must agree with each other.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.HexFormat;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

public class Murmur {
    public static void main(String[] args) throws Exception {
        int[] counts = new int[args.length];
        for (int i = 0; i < args.length; i++) counts[i] = Integer.parseInt(args[i]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            byte[] key = HexFormat.of().parseHex(line.trim());
            int hash = Utils.murmur2(key);
            out.append(hash);
            for (int count : counts) {
                int viaUtils = Utils.toPositive(hash) % count;
                int viaProducer = BuiltInPartitioner.partitionForKey(key, count);
                if (viaUtils != viaProducer) throw new IllegalStateException("utils != producer");
                out.append(' ').append(viaProducer);
            }
            out.append('\n');
        }
        System.out.print(out);
    }
}
